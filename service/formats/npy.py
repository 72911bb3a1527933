"""The .npy v1.0 header (NumPy's format spec), written up front so the data can stream after it."""

from __future__ import annotations

MEDIA_TYPE = "application/x-npy"
_MAGIC = b"\x93NUMPY\x01\x00"


def header(descr: str, shape: tuple[int, ...]) -> bytes:
    """Magic, version 1.0, u16 header length, and the dict literal padded so data starts at a 64-byte boundary."""
    text = f"{{'descr': '{descr}', 'fortran_order': False, 'shape': {tuple(shape)!r}, }}".encode("latin1")
    padding = -(len(_MAGIC) + 2 + len(text) + 1) % 64
    text += b" " * padding + b"\n"
    return _MAGIC + len(text).to_bytes(2, "little") + text
