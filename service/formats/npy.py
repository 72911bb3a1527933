"""One tensor as .npy v1.0 (NumPy's format spec): the header written up front, so the data can stream after it."""

from __future__ import annotations

from collections.abc import Iterator

from service.formats import Bundle, Format, Part, Written, data

_MAGIC = b"\x93NUMPY\x01\x00"
# The dtypes with a standard .npy code (bfloat16 has none).
DTYPES = frozenset({"float32", "float64", "float16", "int64"})


def header(descr: str, shape: tuple[int, ...]) -> bytes:
    """Magic, version 1.0, u16 header length, and the dict literal padded so data starts at a 64-byte boundary."""
    text = f"{{'descr': '{descr}', 'fortran_order': False, 'shape': {tuple(shape)!r}, }}".encode("latin1")
    padding = -(len(_MAGIC) + 2 + len(text) + 1) % 64
    text += b" " * padding + b"\n"
    return _MAGIC + len(text).to_bytes(2, "little") + text


def write(bundle: Bundle, chunk_elements: int) -> Written:
    (tensor,) = bundle.tensors
    head = header(tensor.dtype.npy_descr or "", tensor.shape)

    def parts() -> Iterator[Part]:
        yield head
        yield from data(tensor, chunk_elements)

    return len(head) + tensor.nbytes, parts()


FORMAT = Format(
    name="npy",
    media_type="application/x-npy",
    extension="npy",
    one=True,
    many=False,
    write=write,
    dtypes=DTYPES,
    dtypes_why="NumPy has no standard code for it",
)
