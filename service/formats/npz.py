"""Many tensors as an uncompressed .npz (NumPy's `savez` format: a ZIP of .npy members), canonical and streamed.

Sizes are known up front, so the whole length is too; each member's CRC-32 is computed while its data streams
and written after it in a data descriptor (general purpose flag bit 3, as Python's zipfile does when writing to
an unseekable stream), so nothing has to be held back. Members are stored (method 0), dated 1980-01-01 00:00 and
carry no extra fields: identical input gives identical bytes. Metadata rides in the ZIP comments, which
`numpy.load` ignores: each member's comment holds its tensor's JSON metadata, the archive comment the request's.
ZIP64 is not written: archives stop at 4 GiB and 65535 members.
"""

from __future__ import annotations

import re
import struct
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import orjson

from service.engine.errors import InitError
from service.formats import Bundle, Format, Part, Written, data, npy

MAX_BYTES = 0xFFFFFFFF
MAX_MEMBERS = 0xFFFF
MAX_COMMENT = 0xFFFF
MAX_NAME = 0xFFFF

_VERSION = 20  # 2.0: stored members with data descriptors
_FLAGS = 0x0008 | 0x0800  # sizes and CRC in a data descriptor; names are UTF-8
_DOS_TIME, _DOS_DATE = 0, (0 << 9) | (1 << 5) | 1  # 1980-01-01 00:00:00, the earliest DOS date
_LOCAL = struct.Struct("<IHHHHHIIIHH")
_DESCRIPTOR = struct.Struct("<IIII")
_CENTRAL = struct.Struct("<IHHHHHHIIIHHHHHII")
_END = struct.Struct("<IHHHHIIH")
_UNSAFE_MEMBER = re.compile(r"^/|(^|/)\.\.(/|$)|\\")


def member_filename(key: str) -> bytes:
    """The file numpy.load reads as `key` (it drops a trailing `.npy`)."""
    return (key + ".npy").encode("utf-8")


@dataclass(frozen=True)
class Member:
    """One .npy member: `key` is the name numpy.load gives it (the file inside is `key + ".npy"`)."""

    key: str
    npy_header: bytes
    nbytes: int  # data bytes after the header
    comment: bytes = b""

    @property
    def filename(self) -> bytes:
        return member_filename(self.key)

    @property
    def size(self) -> int:
        return len(self.npy_header) + self.nbytes


def _check(members: Sequence[Member], comment: bytes) -> None:
    if len(members) > MAX_MEMBERS:
        raise ValueError(f"an npz holds at most {MAX_MEMBERS} members without ZIP64, got {len(members)}")
    if len(comment) > MAX_COMMENT or any(len(m.comment) > MAX_COMMENT for m in members):
        raise ValueError(f"ZIP comments are at most {MAX_COMMENT} bytes")
    if len({m.filename for m in members}) != len(members):
        raise ValueError("member names must be unique")
    if any(len(m.filename) > MAX_NAME for m in members):
        raise ValueError(f"ZIP member names are at most {MAX_NAME} bytes")
    if content_length(members, comment) > MAX_BYTES:
        raise ValueError("an npz is at most 4 GiB without ZIP64")


def content_length(members: Sequence[Member], comment: bytes = b"") -> int:
    local = sum(_LOCAL.size + len(m.filename) + m.size + _DESCRIPTOR.size for m in members)
    central = sum(_CENTRAL.size + len(m.filename) + len(m.comment) for m in members)
    return local + central + _END.size + len(comment)


def stream(members: Sequence[Member], data: Iterable[Iterable[Part]], comment: bytes = b"") -> Iterator[Part]:
    """The archive's bytes: `data` yields, per member in order, the chunks of its data (after the npy header)."""
    _check(members, comment)
    offset, central = 0, []
    for member, chunks in zip(members, data, strict=True):
        name = member.filename
        yield _LOCAL.pack(0x04034B50, _VERSION, _FLAGS, 0, _DOS_TIME, _DOS_DATE, 0, 0, 0, len(name), 0) + name
        crc, written = zlib.crc32(member.npy_header), 0
        yield member.npy_header
        for chunk in chunks:
            crc = zlib.crc32(chunk, crc)
            written += len(chunk)
            yield chunk
        if written != member.nbytes:
            raise ValueError(f"member {member.key!r}: {written} data bytes, {member.nbytes} announced")
        yield _DESCRIPTOR.pack(0x08074B50, crc, member.size, member.size)
        central.append(
            _CENTRAL.pack(
                0x02014B50,
                _VERSION,
                _VERSION,
                _FLAGS,
                0,
                _DOS_TIME,
                _DOS_DATE,
                crc,
                member.size,
                member.size,
                len(name),
                0,
                len(member.comment),
                0,
                0,
                0,
                offset,
            )
            + name
            + member.comment
        )
        offset += _LOCAL.size + len(name) + member.size + _DESCRIPTOR.size
    directory = b"".join(central)
    yield directory
    yield _END.pack(0x06054B50, 0, 0, len(members), len(members), len(directory), offset, len(comment)) + comment


def _name_problem(name: str, names: set[str]) -> str | None:
    """Why `numpy.load(archive)[name]` would not give back the tensor of that name (None: it would)."""
    if _UNSAFE_MEMBER.search(name):
        return (
            "an absolute path, a '..' segment or a backslash would be a path outside the archive when unzipped; "
            "use safetensors"
        )
    if "\x00" in name:
        return "a ZIP reader (Python's zipfile, so numpy.load) cuts a member's name at a NUL character; use safetensors"
    if name.endswith(".npy") and name.removesuffix(".npy") in names:
        return (
            f"numpy.load reads the key {name!r} as the member of tensor {name.removesuffix('.npy')!r} (its file is "
            f"{name!r}); rename one of them, or use safetensors"
        )
    if len(member_filename(name)) > MAX_NAME:
        return f"a ZIP member's name is at most {MAX_NAME} bytes of UTF-8 (with '.npy'); use safetensors"
    return None


def check(bundle: Bundle) -> None:
    names = {t.name for t in bundle.tensors}
    for tensor in bundle.tensors:
        if (problem := _name_problem(tensor.name, names)) is not None:
            raise InitError("format", f"format 'npz' cannot name a member {tensor.name!r}: {problem}")


def write(bundle: Bundle, chunk_elements: int) -> Written:
    """Each member's ZIP comment holds its tensor's metadata, the archive comment the request-level fields."""
    members = [
        Member(
            t.name,
            npy.header(t.dtype.npy_descr or "", t.shape),
            t.nbytes,
            orjson.dumps(bundle.tensor_metadata(t), option=orjson.OPT_SORT_KEYS),
        )
        for t in bundle.tensors
    ]
    comment = orjson.dumps(bundle.top_level(), option=orjson.OPT_SORT_KEYS)
    try:
        length = content_length(members, comment)
        if length > MAX_BYTES or any(len(m.comment) > MAX_COMMENT for m in members):
            raise ValueError("too large")
    except ValueError:
        raise InitError("format", "an npz response is limited to 4 GiB; use safetensors") from None
    return length, stream(members, (data(t, chunk_elements) for t in bundle.tensors), comment)


FORMAT = Format(
    name="npz",
    media_type="application/zip",
    aliases=("application/x-npz",),
    extension="npz",
    one=False,
    many=True,
    write=write,
    dtypes=npy.DTYPES,
    dtypes_why="NumPy has no standard code for it",
    check=check,
    check_doc=(
        "no member name that `numpy.load` would not give back (NUL, an absolute path, a `..` segment, a backslash, "
        "`x.npy` beside `x`)"
    ),
)
