"""Deterministic PNG images built with the standard library (zlib), and small PNG readers.

``make_png(width, height, seed)`` gives the same bytes for the same arguments. The pixels are
noise with about 4 bits of entropy per channel, so a 512x512 image compresses to roughly the
size of a real Stable Diffusion PNG (~0.4 MB), which keeps payload-size figures realistic. The
top 16 rows depend on the seed; the rest is shared noise (cheap to encode, see ``_idat``).
"""

from __future__ import annotations

import functools
import random
import struct
import zlib
from collections.abc import Mapping

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MAX_SIDE = 8192


def _chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def _text_chunk(key: str, value: str) -> bytes:
    # iTXt (uncompressed, UTF-8) like PIL writes for non-latin-1 text; tEXt otherwise.
    try:
        return _chunk(b"tEXt", key.encode("latin-1") + b"\x00" + value.encode("latin-1"))
    except UnicodeEncodeError:
        payload = key.encode("latin-1") + b"\x00\x00\x00\x00\x00" + value.encode("utf-8")
        return _chunk(b"iTXt", payload)


def _pixels(width: int, height: int, seed: int, bits: int) -> bytes:
    stride = width * 3
    noise = random.Random(seed).randbytes(stride * height)
    # Keep `bits` random low bits over a seed-dependent base colour.
    base = (seed * 37) & 0xFF & ~((1 << bits) - 1)
    table = bytes(((b & ((1 << bits) - 1)) | base) for b in range(256))
    noise = noise.translate(table)
    return b"".join(b"\x00" + noise[y * stride : (y + 1) * stride] for y in range(height))


# Rows that depend on the seed; the rows below them are shared noise, compressed once per size.
# A full flush after the head resets the deflate window, so the cached tail stays valid after
# any head: a 512x512 image then costs ~1 ms instead of ~10 ms.
HEAD_ROWS = 16
_TAIL_SEED = 0x9E3779B9


@functools.lru_cache(maxsize=16)
def _tail(width: int, rows: int, bits: int) -> tuple[bytes, bytes]:
    raw = _pixels(width, rows, _TAIL_SEED, bits)
    c = zlib.compressobj(1, zlib.DEFLATED, -15)
    return raw, c.compress(raw) + c.flush()


def _idat(width: int, height: int, seed: int, bits: int) -> bytes:
    head_rows = min(height, HEAD_ROWS)
    head = _pixels(width, head_rows, seed, bits)
    c = zlib.compressobj(1, zlib.DEFLATED, -15)
    if head_rows == height:
        return zlib.compress(head, 1)
    tail_raw, tail_z = _tail(width, height - head_rows, bits)
    body = c.compress(head) + c.flush(zlib.Z_FULL_FLUSH) + tail_z
    adler = zlib.adler32(tail_raw, zlib.adler32(head))
    return b"\x78\x01" + body + struct.pack(">I", adler)


@functools.lru_cache(maxsize=64)
def _make_png_cached(
    width: int, height: int, seed: int, text: tuple[tuple[str, str], ...], bits: int
) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    idat = _idat(width, height, seed, bits)
    parts = [PNG_SIGNATURE, _chunk(b"IHDR", ihdr)]
    parts.extend(_text_chunk(k, v) for k, v in text)
    parts.extend([_chunk(b"IDAT", idat), _chunk(b"IEND", b"")])
    return b"".join(parts)


def make_png(
    width: int,
    height: int,
    seed: int,
    parameters: str | None = None,
    *,
    text: Mapping[str, str] | None = None,
    bits: int = 4,
) -> bytes:
    """A deterministic RGB PNG. ``parameters`` becomes a ``parameters`` text chunk (as SD WebUI
    writes the infotext); ``text`` adds more text chunks. ``bits`` (0..8) sets the noise."""
    for name, value in (("width", width), ("height", height)):
        if not isinstance(value, int) or not 1 <= value <= MAX_SIDE:
            raise ValueError(f"make_png: {name}={value!r}, expected an int in 1..{MAX_SIDE}")
    if not 0 <= bits <= 8:
        raise ValueError(f"make_png: bits={bits!r}, expected 0..8")
    chunks: list[tuple[str, str]] = []
    if parameters is not None:
        chunks.append(("parameters", parameters))
    if text:
        chunks.extend((str(k), str(v)) for k, v in text.items())
    return _make_png_cached(width, height, seed & 0xFFFFFFFF, tuple(chunks), bits)


def _iter_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    if not data.startswith(PNG_SIGNATURE):
        raise ValueError("not a PNG: bad signature")
    out = []
    pos = len(PNG_SIGNATURE)
    while pos + 8 <= len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        if len(body) != length:
            raise ValueError(f"truncated PNG chunk {kind!r}")
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        if crc != zlib.crc32(kind + body) & 0xFFFFFFFF:
            raise ValueError(f"bad CRC in PNG chunk {kind!r}")
        out.append((kind, body))
        pos += 12 + length
        if kind == b"IEND":
            break
    return out


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) from the IHDR chunk."""
    if not data.startswith(PNG_SIGNATURE) or data[12:16] != b"IHDR":
        raise ValueError("not a PNG: no IHDR")
    w, h = struct.unpack(">II", data[16:24])
    return int(w), int(h)


def png_text(data: bytes) -> dict[str, str]:
    """The tEXt/iTXt chunks of a PNG (uncompressed iTXt only), checking every CRC."""
    out: dict[str, str] = {}
    for kind, body in _iter_chunks(data):
        if kind == b"tEXt":
            key, _, value = body.partition(b"\x00")
            out[key.decode("latin-1")] = value.decode("latin-1")
        elif kind == b"iTXt":
            key, _, rest = body.partition(b"\x00")
            # compression flag, method, language\0, translated keyword\0, text
            rest = rest[2:]
            _lang, _, rest = rest.partition(b"\x00")
            _tkey, _, value = rest.partition(b"\x00")
            out[key.decode("latin-1")] = value.decode("utf-8")
    return out


def png_pixels(data: bytes) -> bytes:
    """The decompressed scanlines (filter bytes included) of a PNG written by make_png."""
    return zlib.decompress(b"".join(body for kind, body in _iter_chunks(data) if kind == b"IDAT"))


def sniff_image_type(data: bytes) -> str | None:
    """'png', 'jpeg', 'webp', 'gif', 'bmp' from the magic bytes, else None."""
    if data.startswith(PNG_SIGNATURE):
        return "png"
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if data[:2] == b"BM":
        return "bmp"
    return None
