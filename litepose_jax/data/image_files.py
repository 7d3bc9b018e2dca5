"""Cheap structural checks of image files, run when records are built (no pixel decoding).

The training pipeline decodes images inside tf.data, where one unreadable file would stop an epoch in the
middle. These checks find the usual bad files up front, at load or build time, by reading only the header
and the tail of each file: missing or empty files, unknown formats, truncated JPEG / PNG files (no end
marker), CMYK JPEGs (TF cannot decode them) and header sizes that disagree with the annotation file.
Grayscale, RGBA and 16-bit PNGs are fine: the pipeline's decoder converts them to 8-bit RGB.
"""

from __future__ import annotations

import dataclasses
import os
import struct

# How far from the end of a file to look for the end marker. Encoders may append a few bytes after the
# JPEG EOI / PNG IEND (padding, vendor trailers), so we search a window rather than the last bytes only.
_TAIL_BYTES = 64 * 1024
_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'


class BadImageError(ValueError):
  """An image file that the pipeline cannot decode. `reason` is a short category used in summaries."""

  def __init__(self, path: str, reason: str, detail: str):
    super().__init__(f'{path}: {detail}')
    self.path = path
    self.reason = reason


@dataclasses.dataclass(frozen=True)
class ImageInfo:
  """What the header says: format ('jpeg' | 'png' | 'bmp' | 'gif'), size, channels and bits per sample."""
  format: str
  height: int
  width: int
  channels: int
  bit_depth: int = 8


def inspect_image(path: str) -> ImageInfo:
  """Reads the header and the tail of an image file and checks that it is complete.

  Args:
    path: image file.

  Returns:
    ImageInfo from the header.

  Raises:
    BadImageError: missing / empty / unknown format / truncated / CMYK / broken header; the message names
      the file and the problem.
  """
  try:
    size = os.path.getsize(path)
  except OSError:
    raise BadImageError(path, 'missing file', 'image file not found') from None
  if size == 0:
    raise BadImageError(path, 'empty file', 'image file is empty (0 bytes)')
  with open(path, 'rb') as f:
    head = f.read(min(size, 256 * 1024))
    f.seek(max(0, size - _TAIL_BYTES))
    tail = f.read()
    tail_offset = max(0, size - _TAIL_BYTES)
  if head.startswith(b'\xff\xd8'):
    try:
      return _inspect_jpeg(path, head, tail, tail_offset)
    except BadImageError:
      if len(head) == size:
        raise
      # Very large metadata segments (ICC profiles, EXIF thumbnails) can push the first scan past the
      # head we read: look again at the whole file before calling it corrupt.
      with open(path, 'rb') as f:
        return _inspect_jpeg(path, f.read(), tail, tail_offset)
  if head.startswith(_PNG_SIGNATURE):
    return _inspect_png(path, head, tail)
  if head.startswith(b'BM') and len(head) >= 26:
    width, height = struct.unpack('<ii', head[18:26])
    return ImageInfo('bmp', abs(height), width, 3)
  if head.startswith((b'GIF87a', b'GIF89a')) and len(head) >= 10:
    width, height = struct.unpack('<HH', head[6:10])
    return ImageInfo('gif', height, width, 3)
  raise BadImageError(path, 'unknown format',
                      f'not a JPEG, PNG, BMP or GIF file (starts with {head[:8]!r})')


def _inspect_jpeg(path: str, head: bytes, tail: bytes, tail_offset: int) -> ImageInfo:
  """Walks the JPEG marker segments up to the first scan; then looks for EOI after it."""
  pos, info, scan_start = 2, None, None
  while pos + 4 <= len(head):
    if head[pos] != 0xFF:
      raise BadImageError(path, 'corrupt file', f'broken JPEG marker structure at byte {pos}')
    marker = head[pos + 1]
    if marker == 0xFF:  # fill byte
      pos += 1
      continue
    if marker in (0x01,) or 0xD0 <= marker <= 0xD7:  # markers without a length field
      pos += 2
      continue
    (length,) = struct.unpack('>H', head[pos + 2:pos + 4])
    if marker in _JPEG_SOF and pos + 10 <= len(head):
      bits, height, width, channels = struct.unpack('>BHHB', head[pos + 4:pos + 10])
      info = ImageInfo('jpeg', height, width, channels, bits)
    if marker == 0xDA:  # start of scan: entropy-coded data follows
      scan_start = pos + 2 + length
      break
    pos += 2 + length
  if info is None or scan_start is None:
    raise BadImageError(path, 'corrupt file', 'JPEG header has no frame / scan (corrupt or truncated)')
  # Entropy-coded data never contains FF D9 (0xFF bytes are stuffed with 00), so an FF D9 after the first
  # scan is the end-of-image marker. A truncated file has none.
  search_from = max(0, scan_start - tail_offset)
  if tail.find(b'\xff\xd9', search_from) < 0:
    raise BadImageError(path, 'truncated file', 'truncated JPEG (no end-of-image marker)')
  if info.channels not in (1, 3):
    raise BadImageError(path, 'unsupported colour model',
                        f'JPEG with {info.channels} channels (CMYK?) cannot be decoded by TF; '
                        'convert it to RGB')
  if info.height == 0 or info.width == 0:
    raise BadImageError(path, 'corrupt file', f'JPEG header gives size {info.width}x{info.height}')
  return info


def _inspect_png(path: str, head: bytes, tail: bytes) -> ImageInfo:
  if len(head) < 33 or head[12:16] != b'IHDR':
    raise BadImageError(path, 'corrupt file', 'PNG without an IHDR header chunk')
  width, height, bit_depth, color_type = struct.unpack('>IIBB', head[16:26])
  if b'IEND' not in tail[-1024:]:
    raise BadImageError(path, 'truncated file', 'truncated PNG (no IEND chunk)')
  channels = {0: 1, 2: 3, 3: 3, 4: 2, 6: 4}.get(color_type, 0)
  if channels == 0 or width == 0 or height == 0:
    raise BadImageError(path, 'corrupt file', f'PNG header: colour type {color_type}, size {width}x{height}')
  return ImageInfo('png', height, width, channels, bit_depth)
