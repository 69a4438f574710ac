"""Serving: a local stand-in for TF Serving, its clients, and serving checks.

Production serves with TF Serving; `serving.server` speaks the same REST and
gRPC protocols for machines without it, and `imgcls evaluate-serving` and
`imgcls verify-serving` work against either.
"""
