"""The HTTP/1.1 transport of the REST port: bounded, and strict about time.

TF Serving's REST port is libevent with a fixed pool of
`--rest_api_num_threads` workers. The standard library's threading server
gives every connection its own thread, for as long as the client keeps it,
so a few hundred slow clients mean a few hundred threads. Here:
- connections are served by a fixed pool of worker threads; at most
  `max_pending` more wait for a worker, and a connection beyond that gets a
  503 at once and is closed;
- a request's line and headers must arrive within `header_timeout_s` of the
  worker starting to wait for them (a keep-alive connection's idle time
  included), however slowly the bytes trickle in; then the connection is
  closed and the worker moves on;
- anything that is not HTTP/1.x (garbage, a TLS hello, `HTTP/9.9`) gets a
  status line and a 400, as libevent answers it, never a bare body.
"""
import concurrent.futures
import http.server
import io
import socket
import socketserver
import threading
import time
from typing import Optional

_BUSY_BODY = (b'{"error": "Too many connections are waiting for the server; '
              b'try again later"}')
_BUSY_REPLY = (b'HTTP/1.1 503 Service Unavailable\r\nContent-Type: '
               b'application/json\r\nContent-Length: %d\r\nConnection: '
               b'close\r\n\r\n%s' % (len(_BUSY_BODY), _BUSY_BODY))


class _DeadlineReader(io.RawIOBase):
  """Socket reads that fail once a deadline has passed (if one is set), or
  after `idle_timeout_s` without a byte otherwise."""

  def __init__(self, sock: socket.socket, idle_timeout_s: float):
    super().__init__()
    self._sock = sock
    self._idle_timeout_s = idle_timeout_s
    self.deadline: Optional[float] = None

  def readable(self) -> bool:
    return True

  def readinto(self, buffer) -> int:
    timeout = self._idle_timeout_s
    if self.deadline is not None:
      timeout = self.deadline - time.monotonic()
      if timeout <= 0:
        raise TimeoutError('the request headers took too long')
    self._sock.settimeout(timeout)
    return self._sock.recv_into(buffer)


class DeadlineRequestHandler(http.server.BaseHTTPRequestHandler):
  """BaseHTTPRequestHandler with a deadline on each request's headers.

  The server class sets `header_timeout_s`; `timeout` bounds each read of a
  body.
  """
  protocol_version = 'HTTP/1.1'
  # Error replies to unparseable request lines carry a status line (the
  # default, HTTP/0.9, sends a bare body).
  default_request_version = 'HTTP/1.0'
  timeout = 60
  header_timeout_s: float = 10.0

  def setup(self):
    super().setup()
    self._reader = _DeadlineReader(self.connection, self.timeout)
    self.rfile = io.BufferedReader(self._reader)

  def handle_one_request(self):
    self._reader.deadline = time.monotonic() + self.header_timeout_s
    super().handle_one_request()

  def parse_request(self) -> bool:
    parsed = super().parse_request()
    self._reader.deadline = None  # the body is read with `timeout` per read
    return parsed


class BoundedHTTPServer(socketserver.TCPServer):
  """A TCP server whose connections share `workers` threads."""
  allow_reuse_address = True
  daemon_threads = True
  # socketserver's default backlog of 5 refuses bursts of new connections.
  request_queue_size = 128

  def __init__(self, address, handler, workers: int, max_pending: int):
    self._pool = concurrent.futures.ThreadPoolExecutor(
        workers, thread_name_prefix='rest')
    self._slots = threading.BoundedSemaphore(workers + max_pending)
    super().__init__(address, handler)

  def process_request(self, request, client_address):
    if not self._slots.acquire(blocking=False):
      _refuse_busy(request)
      return
    self._pool.submit(self._serve, request, client_address)

  def _serve(self, request, client_address):
    try:
      self.finish_request(request, client_address)
    except Exception:  # one connection only
      self.handle_error(request, client_address)
    finally:
      self.shutdown_request(request)
      self._slots.release()

  def server_close(self):
    super().server_close()
    self._pool.shutdown(wait=False, cancel_futures=True)


class BoundedHTTPServerV6(BoundedHTTPServer):
  address_family = socket.AF_INET6


def _refuse_busy(request: socket.socket) -> None:
  try:
    request.settimeout(1.0)
    request.sendall(_BUSY_REPLY)
  except OSError:
    pass
  finally:
    request.close()
