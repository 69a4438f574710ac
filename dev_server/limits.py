"""Limits of the development server, free of heavy imports for the CLI."""
# The largest REST body or gRPC message the local server accepts.
MAX_REQUEST_BYTES = 64 << 20
