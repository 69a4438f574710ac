"""`imgcls serve`: a development stand-in for TF Serving.

It speaks TF Serving's REST and gRPC APIs so clients can be tested on a
laptop; production serves with TF Serving itself (kubernetes/). The
differences are listed in docs/serving.md.
"""
