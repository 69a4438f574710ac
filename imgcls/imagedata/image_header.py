"""What an image file declares about itself, read from its header alone.

Format, width, height and channels come from the first few dozen bytes (for
JPEG, the marker segments up to the first frame header), without decoding a
pixel (for GIF, its block structure, to find every frame's size). That
makes them cheap enough to record for every file the ExampleGen
reads (features for data validation), and safe to check before anything
allocates a decompression bomb's pixels.

Pure Python on purpose: the ExampleGen's workers, the standalone trainer and
the clients share it without TensorFlow. The layouts follow the decoders the
model uses (TensorFlow's tensorflow/core/kernels/image/decode_image_op.cc for
the signatures and BMP, tensorflow/core/lib/png/png_io.cc, jpeg/jpeg_mem.cc,
gif/gif_io.cc) and Pillow's plugins (PngImagePlugin, JpegImagePlugin's SOF
marker table, GifImagePlugin, BmpImagePlugin) for the rest.
"""
import dataclasses
import struct

PNG = 'PNG'
JPEG = 'JPEG'
GIF = 'GIF'
BMP = 'BMP'
FORMATS = (PNG, JPEG, GIF, BMP)
SUPPORTED = 'PNG, JPEG, BMP or GIF'

PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'
_JPEG_SIGNATURE = b'\xff\xd8\xff'  # the 4th byte varies (decode_image_op.cc)
_GIF_SIGNATURE = b'GIF8'  # GIF87a and GIF89a, as decode_image_op.cc tests
_BMP_SIGNATURE = b'BM'
# Formats people bring that TensorFlow's decode_image does not read.
_UNSUPPORTED_SIGNATURES = (
    (0, b'II*\x00', 'TIFF'), (0, b'MM\x00*', 'TIFF'), (8, b'WEBP', 'WebP'),
    (4, b'ftypheic', 'HEIC'), (4, b'ftypheix', 'HEIC'),
    (4, b'ftypmif1', 'HEIF'), (4, b'ftypavif', 'AVIF'), (0, b'%PDF', 'PDF'))

# PNG colour type -> samples per pixel, as libpng expands them for
# TensorFlow's decoder (palette -> RGB). PNG spec, 11.2.2 IHDR.
_PNG_CHANNELS = {0: 1, 2: 3, 3: 3, 4: 2, 6: 4}
# JPEG frame headers: SOF0-3, 5-7, 9-11, 13-15 (not DHT C4, JPG C8, DAC CC),
# Pillow's JpegImagePlugin.MARKER table.
_JPEG_SOF = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA,
                       0xCB, 0xCD, 0xCE, 0xCF})
# Markers without a length field: TEM, RST0-7 (ITU T.81, B.1.1.3).
_JPEG_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})
_JPEG_SOS, _JPEG_EOI = 0xDA, 0xD9
# GIF block introducers (GIF89a spec, 20-27).
_GIF_EXTENSION, _GIF_IMAGE, _GIF_TRAILER = 0x21, 0x2C, 0x3B
# BMP: TensorFlow reads width, height (int32) and bits per pixel at these
# offsets of a BITMAPINFOHEADER (or a larger one), and takes bpp / 8 channels.
_BMP_INFO_HEADER_SIZE = 40
_BMP_CHANNELS = {8: 1, 24: 3, 32: 4}
_BMP_UNCOMPRESSED = (0, 3)  # BI_RGB, BI_BITFIELDS: pixels stored as is
# Dimensions are signed 32-bit in every decoder the model may use.
_MAX_SIDE = 2**31 - 1


class HeaderError(ValueError):
  """Why bytes are not a readable image header; the message is for users."""


@dataclasses.dataclass(frozen=True)
class ImageHeader:
  format: str  # one of FORMATS
  width: int
  height: int
  channels: int  # what TensorFlow's decode_image gives with channels=0

  @property
  def pixels(self) -> int:
    return self.width * self.height


def read_header(data: bytes) -> ImageHeader:
  """The header of an encoded PNG, JPEG, GIF or BMP; HeaderError otherwise."""
  if not data:
    raise HeaderError('empty file (0 bytes)')
  data = memoryview(data)
  if data[:len(PNG_SIGNATURE)] == PNG_SIGNATURE:
    header = _png(data)
  elif data[:3] == _JPEG_SIGNATURE:
    header = _jpeg(data)
  elif data[:4] == _GIF_SIGNATURE:
    header = _gif(data)
  elif data[:2] == _BMP_SIGNATURE:
    header = _bmp(data)
  else:
    raise HeaderError(_unknown_format(bytes(data[:16])))
  if not (0 < header.width <= _MAX_SIDE and 0 < header.height <= _MAX_SIDE):
    raise HeaderError(f'{header.format} header declares an impossible size '
                      f'{header.width}x{header.height}')
  return header


def _unknown_format(start: bytes) -> str:
  for offset, signature, name in _UNSUPPORTED_SIGNATURES:
    if start[offset:offset + len(signature)] == signature:
      return f'unsupported format {name} (use {SUPPORTED})'
  return f'not a readable image: not a {SUPPORTED} file'


def _unpack(fmt: str, data: memoryview, offset: int, what: str):
  if offset + struct.calcsize(fmt) > len(data):
    raise HeaderError(f'not a readable image: truncated {what} '
                      f'({len(data)} bytes)')
  return struct.unpack_from(fmt, data, offset)


def _png(data: memoryview) -> ImageHeader:
  """The IHDR chunk, which the PNG spec requires first (11.2.2)."""
  _, kind, width, height, _, colour_type = _unpack('>I4sIIBB', data, 8,
                                                   'PNG header')
  if kind != b'IHDR':
    raise HeaderError('not a readable image: PNG without IHDR')
  if colour_type not in _PNG_CHANNELS:
    raise HeaderError(f'not a readable image: PNG colour type {colour_type}')
  return ImageHeader(PNG, width, height, _PNG_CHANNELS[colour_type])


def _jpeg(data: memoryview) -> ImageHeader:
  """Walks the marker segments up to the first frame header (SOFn)."""
  position = 2
  while True:
    (marker,) = _unpack('>B', data, position, 'JPEG header')
    if marker != 0xFF:
      raise HeaderError(f'not a readable image: JPEG marker expected at '
                        f'byte {position}')
    while data[position:position + 1] == b'\xff':  # fill bytes (B.1.1.2)
      position += 1
    (marker,) = _unpack('>B', data, position, 'JPEG header')
    position += 1
    if marker in _JPEG_STANDALONE:
      continue
    if marker in (_JPEG_SOS, _JPEG_EOI):
      raise HeaderError('not a readable image: JPEG without a frame header')
    (length,) = _unpack('>H', data, position, 'JPEG header')
    if marker in _JPEG_SOF:
      _, height, width, components = _unpack('>BHHB', data, position + 2,
                                              'JPEG frame header')
      return ImageHeader(JPEG, width, height, components)
    if length < 2:
      raise HeaderError(f'not a readable image: JPEG segment length {length}')
    position += length


def _gif(data: memoryview) -> ImageHeader:
  """The largest frame: TensorFlow's decoder sizes its output by the frames'
  image descriptors, not the logical screen (gif_io.cc), so all are read."""
  (packed,) = _unpack('<B', data, 10, 'GIF header')
  position = 13 + _gif_colour_table_size(packed)
  width = height = 0
  while position < len(data):  # a missing trailer is tolerated, as by giflib
    block = data[position]
    if block == _GIF_TRAILER:
      break
    if block == _GIF_EXTENSION:
      position = _skip_gif_sub_blocks(data, position + 2)
    elif block == _GIF_IMAGE:
      _, _, frame_width, frame_height, packed = _unpack(
          '<HHHHB', data, position + 1, 'GIF image descriptor')
      width, height = max(width, frame_width), max(height, frame_height)
      position = _skip_gif_sub_blocks(
          data, position + 11 + _gif_colour_table_size(packed))
    else:
      raise HeaderError(f'not a readable image: GIF block {block:#x} at byte '
                        f'{position}')
  if not width:
    raise HeaderError('not a readable image: GIF without an image')
  return ImageHeader(GIF, width, height, 3)


def _gif_colour_table_size(packed: int) -> int:
  return 3 * 2**((packed & 7) + 1) if packed & 0x80 else 0


def _skip_gif_sub_blocks(data: memoryview, position: int) -> int:
  """The position after a chain of sub-blocks (size byte, data) ending in an
  empty one."""
  while True:
    if position >= len(data):
      raise HeaderError(f'not a readable image: truncated GIF '
                        f'({len(data)} bytes)')
    size = data[position]
    position += 1 + size
    if not size:
      return position


def _bmp(data: memoryview) -> ImageHeader:
  """The info header, read as TensorFlow's DecodeBmpV2 reads it.

  TensorFlow decodes only uncompressed 8, 24 and 32-bit BMPs with an info
  header; Pillow would accept more, so the rest are refused here rather than
  fail in training or serving.
  """
  (header_size,) = _unpack('<I', data, 14, 'BMP header')
  if header_size < _BMP_INFO_HEADER_SIZE:
    raise HeaderError(f'unsupported BMP: {header_size}-byte OS/2 header '
                      '(save it as a Windows BMP, or as PNG)')
  width, height, _, bits, compression = _unpack('<iiHHI', data, 18,
                                                'BMP header')
  if bits not in _BMP_CHANNELS:
    raise HeaderError(f'unsupported BMP: {bits} bits per pixel (TensorFlow '
                      'decodes 8, 24 and 32)')
  if compression not in _BMP_UNCOMPRESSED:
    raise HeaderError(f'unsupported BMP: compression {compression} '
                      '(TensorFlow decodes uncompressed BMPs)')
  return ImageHeader(BMP, width, abs(height), _BMP_CHANNELS[bits])
