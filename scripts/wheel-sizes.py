"""Download and installed sizes of the wheels of a section of requirements.lock
(default: gpu, the CUDA wheels of the GPU variant), for docs/kubeflow.md:
  python3 scripts/wheel-sizes.py [SECTION]
From PyPI's JSON API and, for the installed size, the zip's central directory
read with HTTP range requests: nothing big is downloaded."""
import io, json, re, sys, urllib.request, urllib.parse, zipfile
sys.path.insert(0, __import__('os').path.dirname(__file__))
import lock

class RangeFile(io.RawIOBase):
  def __init__(self, url, size):
    self.url, self.size, self.pos = url, size, 0
  def seekable(self): return True
  def readable(self): return True
  def seek(self, off, whence=0):
    self.pos = {0: off, 1: self.pos + off, 2: self.size + off}[whence]; return self.pos
  def tell(self): return self.pos
  def read(self, n=-1):
    if n < 0 or self.pos + n > self.size: n = self.size - self.pos
    if n == 0: return b''
    req = urllib.request.Request(self.url, headers={'Range': f'bytes={self.pos}-{self.pos+n-1}'})
    data = urllib.request.urlopen(req, timeout=60).read()
    self.pos += len(data); return data
  def readinto(self, b):
    d = self.read(len(b)); b[:len(d)] = d; return len(d)

def wheel(name, version):
  meta = json.load(urllib.request.urlopen(f'https://pypi.org/pypi/{name}/json', timeout=60))
  files = [u for u in meta['releases'][version] if u['filename'].endswith('.whl')]
  def ok(f):
    fn = f['filename']
    return ('x86_64' in fn and 'manylinux' in fn or fn.endswith('-none-any.whl')) and ('cp313' in fn or 'py3' in fn or 'abi3' in fn)
  cand = [f for f in files if ok(f)]
  if not cand:
    return None
  f = dict(cand[0]); f['url'] = urllib.parse.urljoin(f'https://pypi.org/pypi/{name}/json', f['url']); return f

section = sys.argv[1] if len(sys.argv) > 1 else 'gpu'
pins = lock.pins(lock.section(section))
pins.pop('tensorflow', None) if section == 'gpu' else None
tot_dl = tot_inst = 0
for name, version in sorted(pins.items()):
  f = wheel(name, version)
  if f is None:
    print(f'{name}=={version}\tno wheel for cp313 x86_64 (built from its sdist)')
    continue
  z = zipfile.ZipFile(RangeFile(f['url'], f['size']))
  inst = sum(i.file_size for i in z.infolist())
  tot_dl += f['size']; tot_inst += inst
  print(f'{name}=={version}\t{f["size"]/1e6:.0f} MB\t{inst/1e6:.0f} MB\t{f["filename"]}')
print(f'TOTAL\t{tot_dl/1e9:.2f} GB download\t{tot_inst/1e9:.2f} GB installed')
