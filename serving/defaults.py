"""Names and defaults shared by the serving commands and the code they drive.

Free of TensorFlow imports, so that `imgcls --help` stays instant.
"""
REST_PORT = 8501
GRPC_PORT = 8500
# The largest REST body or gRPC message the local server accepts.
MAX_REQUEST_BYTES = 64 << 20
PROTOCOLS = ('rest', 'grpc')

# The model's image signatures (trainer/models.py), and TF Serving's default.
SERVING_BYTES = 'serving_bytes'
SERVING_DEFAULT = 'serving_default'
IMAGE_SIGNATURES = (SERVING_BYTES, SERVING_DEFAULT)
CLASS_NAME_OUTPUT = 'class_name'
