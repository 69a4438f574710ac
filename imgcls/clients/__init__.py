"""Clients of any TF Serving, real or the development stand-in: REST and gRPC
predict, `imgcls evaluate-serving` and `imgcls verify-serving`."""
