"""Download and installed sizes of the wheels of a section of requirements.lock
(default: gpu, the CUDA wheels of the GPU variant), for docs/kubeflow.md:
  python3 scripts/wheel-sizes.py [SECTION]
From PyPI's JSON API and, for the installed size, each zip's central directory
read with HTTP range requests: nothing big is downloaded."""
import io
import json
import os
import sys
import urllib.parse
import urllib.request
import zipfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lock


class RangeFile(io.RawIOBase):
  """A remote file, read with HTTP range requests."""

  def __init__(self, url, size):
    super().__init__()
    self.url, self.size, self.pos = url, size, 0

  def seekable(self):
    return True

  def readable(self):
    return True

  def seek(self, offset, whence=0):
    self.pos = {0: offset, 1: self.pos + offset, 2: self.size + offset}[whence]
    return self.pos

  def tell(self):
    return self.pos

  def read(self, n=-1):
    if n < 0 or self.pos + n > self.size:
      n = self.size - self.pos
    if n <= 0:
      return b''
    request = urllib.request.Request(
        self.url, headers={'Range': f'bytes={self.pos}-{self.pos + n - 1}'})
    data = urllib.request.urlopen(request, timeout=60).read()
    self.pos += len(data)
    return data


def wheel(name, version):
  """The file pip picks on CPython 3.13, Linux x86_64, or None (sdist)."""
  url = f'https://pypi.org/pypi/{name}/json'
  meta = json.load(urllib.request.urlopen(url, timeout=60))

  def fits(filename):
    return (filename.endswith('.whl')
            and ('x86_64' in filename and 'manylinux' in filename
                 or filename.endswith('-none-any.whl'))
            and ('cp313-' in filename or 'py3' in filename
                 or 'abi3' in filename))

  for f in meta['releases'][version]:
    if fits(f['filename']):
      return {**f, 'url': urllib.parse.urljoin(url, f['url'])}
  return None


def main(section):
  pins = lock.pins(lock.section(section))
  if section == 'gpu':
    pins.pop('tensorflow')  # in the CPU image already
  downloaded = installed = 0
  for name, version in sorted(pins.items()):
    f = wheel(name, version)
    if f is None:
      print(f'{name}=={version}\tno cp313 x86_64 wheel (built from its sdist)')
      continue
    files = zipfile.ZipFile(RangeFile(f['url'], f['size'])).infolist()
    size = sum(i.file_size for i in files)
    downloaded += f['size']
    installed += size
    print(f'{name}=={version}\t{f["size"] / 1e6:.0f} MB\t{size / 1e6:.0f} MB')
  print(f'total\t{downloaded / 1e9:.2f} GB download\t'
        f'{installed / 1e9:.2f} GB installed')


if __name__ == '__main__':
  main(sys.argv[1] if len(sys.argv) > 1 else 'gpu')
