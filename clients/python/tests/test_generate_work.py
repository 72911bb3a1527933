"""generate() does the work a request needs and no more, counted in Philox blocks: each block of the stream once,
and a slice only the blocks of its own elements (section 2.3: every element draws on block i // 4 alone)."""

from __future__ import annotations

import numpy as np
import pytest

from initserve_client import generate, philox, philox2


@pytest.fixture
def blocks(monkeypatch) -> list[int]:
    counted: list[int] = []
    real = philox.stream_words

    def counting(key: tuple[int, int], block: np.ndarray, purpose: int) -> np.ndarray:
        counted.extend(int(b) for b in block)
        return real(key, block, purpose)

    monkeypatch.setattr(philox, "stream_words", counting)
    return counted


@pytest.mark.parametrize("scheme", ["normal", "uniform", "trunc_normal"])
def test_a_whole_tensor_computes_each_block_once(blocks, scheme):
    generate({"shape": [3, 333], "scheme": scheme, "seed": 1})  # 999 elements: blocks 0..249, over chunks
    assert sorted(blocks) == list(range(250))


def test_a_slice_computes_only_its_own_blocks(blocks):
    # one row of a [2^20, 2^20] matrix: 2^40 elements in all, whose first block is 2^38 * row
    row, start = 12345, 2**20 - 7
    tensor = generate(
        {"shape": [2**20, 2**20], "scheme": "normal", "seed": 3, "slice": [[row, row + 1], [start, 2**20]]}
    )
    first = (row * 2**20 + start) // 4
    assert tensor.shape == (1, 7) and sorted(set(blocks)) == [first, first + 1] and len(blocks) == 2
    flat = row * 2**20 + start  # the same elements of the same stream, as a 1-D tensor of 2^40
    same = generate({"shape": [2**40], "scheme": "normal", "seed": 3, "slice": [[flat, flat + 7]]})
    assert same.array.tobytes() == tensor.array.tobytes()


def test_constant_schemes_draw_nothing(blocks):
    for request in (
        {"shape": [64, 64], "scheme": "eye"},
        {"shape": [8, 4, 3, 3], "scheme": "dirac", "groups": 2},
        {"shape": [100], "scheme": "constant", "val": -0.0},
    ):
        generate({**request, "seed": 1})
    assert blocks == []


# ---- philox-v2 (docs/philox-v2.md section 5): block i // 4 (narrow) or i // 2 (wide), and retry blocks only for
# the normal's elements off the ziggurat's fast path


@pytest.fixture
def blocks_v2(monkeypatch) -> dict[str, list[int]]:
    counted: dict[str, list[int]] = {"stream": [], "retry": []}
    stream, retry = philox2.stream_words, philox2.retry_blocks

    def counting_stream(words: tuple[int, ...], block: np.ndarray, purpose: int) -> np.ndarray:
        counted["stream"].extend(int(b) for b in block)
        return stream(words, block, purpose)

    def counting_retry(words: tuple[int, ...], element: np.ndarray, n: np.ndarray) -> np.ndarray:
        counted["retry"].extend(int(i) for i in element)
        return retry(words, element, n)

    monkeypatch.setattr(philox2, "stream_words", counting_stream)
    monkeypatch.setattr(philox2, "retry_blocks", counting_retry)
    return counted


@pytest.mark.parametrize(("dtype", "per_block"), [("float32", 4), ("bfloat16", 4), ("float64", 2)])
@pytest.mark.parametrize("scheme", ["normal", "uniform", "trunc_normal"])
def test_v2_a_whole_tensor_computes_each_block_once(blocks_v2, scheme, dtype, per_block):
    generate({"shape": [3, 333], "scheme": scheme, "seed": 1, "dtype": dtype, "rng": "philox-v2"})
    assert sorted(blocks_v2["stream"]) == list(range(-(-999 // per_block)))


def test_v2_the_normal_retries_only_the_tries_off_its_fast_path(blocks_v2):
    tensor = generate({"shape": [1 << 16], "scheme": "normal", "seed": 5, "rng": "philox-v2", "dtype": "float64"})
    retried = set(blocks_v2["retry"])
    # 1.5% of first tries leave the fast path (section 9); each such element reads its own retry stream
    assert 0.01 * tensor.array.size < len(retried) < 0.02 * tensor.array.size
    assert len(blocks_v2["retry"]) < 4 * len(retried)  # a wedge test and a second try: a block or two each


def test_v2_a_slice_computes_only_its_own_blocks(blocks_v2):
    row, start = 12345, 2**20 - 7
    request = {"shape": [2**20, 2**20], "scheme": "normal", "seed": 3, "rng": "philox-v2"}
    tensor = generate({**request, "slice": [[row, row + 1], [start, 2**20]]})
    first = (row * 2**20 + start) // 4
    assert tensor.shape == (1, 7) and sorted(set(blocks_v2["stream"])) == [first, first + 1]
    assert set(blocks_v2["retry"]) <= set(range(row * 2**20 + start, (row + 1) * 2**20))
    flat = row * 2**20 + start  # the same elements of the same stream, as a 1-D tensor of 2^40
    same = generate({"shape": [2**40], "scheme": "normal", "seed": 3, "rng": "philox-v2", "slice": [[flat, flat + 7]]})
    assert same.array.tobytes() == tensor.array.tobytes()
