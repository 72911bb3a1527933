"""A transformers checkpoint directory in the Hub's layout, each file a function of the request alone.

    config.json                        the request's config, with its head class (`architectures`) and `dtype`
    model.safetensors                  every tensor, when they fit in one shard
    model-0000k-of-0000n.safetensors   else shards, cut as huggingface_hub cuts them (in state-dict order, a new
    model.safetensors.index.json       shard when the next tensor would pass the size; a larger tensor alone)

Safetensors metadata carries `"format": "pt"` (from_pretrained reads it) beside the usual request-level fields.
Every file's bytes are known before generation (sizes, headers, index) and its data is generated tensor by tensor
in chunks, so memory stays bounded whatever the model's size: `files()` is what a directory writer, or an HTTP
server serving the files one by one, streams.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from service import __version__
from service.api.delivery import many
from service.engine.bundle import ModelRequest, ModelTensor, plan_model
from service.engine.errors import InitError
from service.engine.recipes.transformers import TransformersModel
from service.formats import Part
from service.formats.safetensors import write as write_safetensors

CONFIG = "config.json"
WEIGHTS = "model.safetensors"
INDEX = "model.safetensors.index.json"
DEFAULT_SHARD_SIZE = "5GB"
_UNITS = {"KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12}  # decimal, as huggingface_hub's parse_size_to_int
_STALE = re.compile(r"model(-\d{5}-of-\d{5})?\.safetensors(\.index\.json)?")


def parse_size(text: str) -> int:
    """Bytes in "5GB", "500MB" (decimal units, as save_pretrained's max_shard_size) or a plain integer."""
    text = text.strip()
    multiplier = _UNITS.get(text[-2:].upper(), 1)
    number = text[:-2] if multiplier > 1 else text
    try:
        size = int(float(number) * multiplier)
    except ValueError:
        size = 0
    if size < 1:
        raise InitError("shard_size", f"shard size must be a positive size such as 5GB or 500MB, got {text!r}")
    return size


def shards(tensors: Sequence[ModelTensor], max_bytes: int) -> list[list[ModelTensor]]:
    """huggingface_hub's split_state_dict_into_shards: in order; a new shard when the next tensor would take the
    current one past max_bytes; a tensor larger than max_bytes in a shard of its own."""
    cut: list[list[ModelTensor]] = []
    current: list[ModelTensor] = []
    size = 0
    for tensor in tensors:
        if tensor.nbytes > max_bytes:
            cut.append([tensor])
            continue
        if size + tensor.nbytes > max_bytes:
            cut.append(current)
            current, size = [], 0
        current.append(tensor)
        size += tensor.nbytes
    if current:
        cut.append(current)
    return cut


def _json(value: Any) -> bytes:
    return (json.dumps(value, indent=2, sort_keys=True) + "\n").encode()  # as save_pretrained writes its JSON


@dataclass(frozen=True)
class Checkpoint:
    model: TransformersModel
    seed: int
    rng: str
    shards: list[list[ModelTensor]]

    def shard_names(self) -> list[str]:
        count = len(self.shards)
        return [WEIGHTS] if count == 1 else [f"model-{k:05d}-of-{count:05d}.safetensors" for k in range(1, count + 1)]

    def metadata(self) -> dict[str, Any]:
        meta = {"seed": self.seed, "rng": self.rng, "service": f"initserve {__version__}", **self.model.metadata()}
        return {**meta, "format": "pt"}

    def index(self) -> dict[str, Any]:
        tensors = [tensor for shard in self.shards for tensor in shard]
        weight_map = {t.name: name for name, shard in zip(self.shard_names(), self.shards, strict=True) for t in shard}
        total = {"total_parameters": sum(t.numel for t in tensors), "total_size": sum(t.nbytes for t in tensors)}
        return {"metadata": total, "weight_map": weight_map}

    def files(self) -> dict[str, File]:
        """Every file of the directory, by name: config.json, the weights, the index when sharded."""
        files = {CONFIG: File(CONFIG, _json(self.model.config))}
        for name, tensors in zip(self.shard_names(), self.shards, strict=True):
            _, parts = write_safetensors(many(tensors, self.metadata()), 1)  # type: ignore[arg-type]
            files[name] = File(name, bytes(next(parts)), tuple(tensors))  # the header alone: nothing is generated
        if len(self.shards) > 1:
            files[INDEX] = File(INDEX, _json(self.index()))
        return files


@dataclass(frozen=True)
class File:
    """One file of a checkpoint: `head` (a JSON file's whole text, a safetensors file's header), then the data
    of `tensors` in order. Its length and digest are known before anything is generated, and any byte range of
    it generates only the elements that range touches."""

    name: str
    head: bytes
    tensors: tuple[ModelTensor, ...] = ()

    @property
    def length(self) -> int:
        return len(self.head) + sum(t.nbytes for t in self.tensors)

    @property
    def machine_exact(self) -> bool:
        return all(t.machine_exact for t in self.tensors)

    def digest(self) -> str:
        """40 hex digits that change whenever a byte of the file would. A JSON file's is its git blob id, as the
        Hub gives; a safetensors file's hashes its header, which names every tensor's rng, seed, scheme and
        parameters, and with them each value (philox-v1's bits are fixed forever)."""
        if not self.tensors:
            return hashlib.sha1(b"blob %d\0" % len(self.head) + self.head, usedforsecurity=False).hexdigest()
        return hashlib.sha256(b"safetensors\0" + self.head).hexdigest()[:40]

    def spans(self, first: int, last: int) -> Iterator[tuple[ModelTensor, int, int, int]]:
        """(tensor, its offset in the file, its first element, its last element + 1) of each tensor that bytes
        [first, last) touch."""
        offset = len(self.head)
        for tensor in self.tensors:
            size = tensor.dtype.itemsize
            lo, hi = max(first, offset), min(last, offset + tensor.nbytes)
            if lo < hi:
                yield tensor, offset, (lo - offset) // size, -(-(hi - offset) // size)
            offset += tensor.nbytes
            if offset >= last:
                return

    def work(self, first: int, last: int) -> int:
        """Elements the engine computes for bytes [first, last)."""
        return sum(stop - start for _, _, start, stop in self.spans(first, last))

    def working_bytes(self, first: int, last: int, chunk_elements: int) -> int:
        """Memory `read` holds at once: one chunk of the largest tensor touched."""
        return max((t.working_bytes(chunk_elements) for t, _, _, _ in self.spans(first, last)), default=0)

    def read(self, first: int, last: int, chunk_elements: int) -> Iterator[Part]:
        """Bytes [first, last) of the file, chunk by chunk, generating only the elements they hold (a partial
        element at either end is generated whole and cut)."""
        if first < len(self.head):
            yield self.head[first : min(last, len(self.head))]
        for tensor, offset, start, stop in self.spans(first, last):
            position = offset + start * tensor.dtype.itemsize  # of the next chunk's first byte
            for chunk in tensor.chunks(chunk_elements, start, stop):
                raw = chunk.reshape(-1).view(np.uint8)
                yield raw[max(0, first - position) : min(raw.size, last - position)]
                position += raw.size


def plan_checkpoint(model: TransformersModel, seed: int, rng: str, max_shard_bytes: int) -> Checkpoint:
    tensors = plan_model(ModelRequest(seed, model.specs, rng))
    return Checkpoint(model, seed, rng, shards(tensors, max_shard_bytes))


def write_directory(checkpoint: Checkpoint, directory: Path, chunk_elements: int) -> dict[str, int]:
    """Every file into `directory` (created if need be), each written to a temporary name and renamed when whole;
    weight files of an earlier layout there are removed, as save_pretrained removes them. File name -> bytes."""
    directory.mkdir(parents=True, exist_ok=True)
    files = checkpoint.files()
    for stale in directory.iterdir():
        if _STALE.fullmatch(stale.name) and stale.name not in files:
            stale.unlink()
    written = {}
    for name, file in files.items():
        partial = directory / f".{name}.partial"
        with partial.open("wb") as out:
            for part in file.read(0, file.length, chunk_elements):
                out.write(part)
        size = partial.stat().st_size
        if size != file.length:
            raise RuntimeError(f"{name}: wrote {size} bytes, expected {file.length}")
        partial.replace(directory / name)
        written[name] = size
    return written


def human(size: int) -> str:
    """A byte count for people: 1.2 GB."""
    if size < 1000:
        return f"{size} B"
    exponent = min(int(math.log10(size) // 3), 4)
    return f"{size / 1000**exponent:.1f} {' KMGT'[exponent]}B"
