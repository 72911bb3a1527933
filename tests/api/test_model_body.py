"""Many-tensor bodies without HTTP: streamed lazily tensor by tensor, announced lengths exact, bytes canonical."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import ClassVar

import numpy as np
import pytest
from safetensors.numpy import load as load_safetensors

from service.api.delivery import STREAM_CHUNK_ELEMENTS, buffered_body, many, streamed_body
from service.engine.bundle import ModelRequest, RandomTensor, TensorSpec, plan_model
from service.formats import FORMATS, npz

META = {"seed": 4, "rng": "philox-v1", "service": "initserve test"}
# Larger than one stream chunk, so tensors cross chunk boundaries.
SPECS = {
    "big": TensorSpec((STREAM_CHUNK_ELEMENTS + 1000,), "normal"),
    "ortho": TensorSpec((64, 32), "orthogonal"),
    "half": TensorSpec((3, 5), "uniform", dtype="float16"),
    "count": TensorSpec((), "zeros", dtype="int64"),
}


class Counting(RandomTensor):
    """Records when its values are generated."""

    log: ClassVar[list[str]] = []

    def chunks(self, chunk_elements: int = STREAM_CHUNK_ELEMENTS) -> Iterator[np.ndarray]:
        Counting.log.append(self.name)
        yield from super().chunks(chunk_elements)


def _tensors() -> list:
    return plan_model(ModelRequest(4, SPECS))


@pytest.mark.parametrize("fmt", ["safetensors", "npz"])
def test_announced_length_is_exact_and_bytes_are_canonical(fmt):
    length, chunks = streamed_body(many(_tensors(), META), FORMATS[fmt])
    content = b"".join(chunks)
    assert len(content) == length
    assert buffered_body(many(_tensors(), META), FORMATS[fmt]) == content
    reference = {t.name: t.tensor() for t in _tensors()}
    loaded = load_safetensors(content) if fmt == "safetensors" else dict(np.load(io.BytesIO(content)))
    for name, tensor in reference.items():
        assert loaded[name].dtype == tensor.dtype and loaded[name].tobytes() == tensor.tobytes(), name


def test_stream_generates_tensor_by_tensor_as_it_is_read():
    Counting.log = []
    tensors = [Counting(t.plan) for t in _tensors() if isinstance(t, RandomTensor)]
    _, chunks = streamed_body(many(tensors, META), FORMATS["safetensors"])
    next(chunks)  # the header: sizes are known, nothing generated yet
    assert Counting.log == []
    next(chunks)
    assert Counting.log == ["big"]
    list(chunks)
    assert Counting.log == ["big", "ortho", "half"]


def test_npz_refuses_what_it_cannot_hold():
    with pytest.raises(ValueError, match="announced"):
        list(npz.stream([npz.Member("a", b"", 4)], [[b"12"]]))
    with pytest.raises(ValueError, match="unique"):
        list(npz.stream([npz.Member("a", b"", 0), npz.Member("a", b"", 0)], [[], []]))
