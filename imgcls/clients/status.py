"""Failures with TF Serving's status codes, and how REST shows them.

TF Serving answers every failure with a canonical status code. gRPC sends the
code as is; REST maps it to an HTTP status and a `{"error": ...}` body. Both
front ends raise the same `ServingError`, so they agree on every failure.
"""
import grpc

# TF Serving's status -> HTTP mapping (its HTTP server's ToHTTPStatusCode).
_HTTP_STATUS = {
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}
_CODES_BY_NUMBER = {code.value[0]: code for code in grpc.StatusCode}


class ServingError(Exception):
  """A request that failed with a status code, and TF Serving's message."""

  def __init__(self, code: grpc.StatusCode, message: str):
    super().__init__(message)
    self.code = code
    self.message = message

  @property
  def http_status(self) -> int:
    return _HTTP_STATUS.get(self.code, 500)

  def __str__(self):
    return f'{self.code.name}: {self.message}'


def invalid_argument(message: str) -> ServingError:
  return ServingError(grpc.StatusCode.INVALID_ARGUMENT, message)


def not_found(message: str) -> ServingError:
  return ServingError(grpc.StatusCode.NOT_FOUND, message)


def code_from_number(number: int) -> grpc.StatusCode:
  """The status code for TensorFlow's numeric error codes (the same numbers)."""
  return _CODES_BY_NUMBER.get(number, grpc.StatusCode.UNKNOWN)
