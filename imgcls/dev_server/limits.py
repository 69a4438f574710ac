"""Limits of the development server, free of heavy imports for the CLI."""
# The largest REST body or gRPC message the local server accepts.
MAX_REQUEST_BYTES = 64 << 20
# The most bytes of pixels (width x height x 4) the images of one request may
# declare in their headers: an 8192x8192 image, or 64 of 1024x1024.
MAX_DECODED_IMAGE_BYTES = 256 << 20
