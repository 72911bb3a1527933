"""generate() does the work a request needs and no more, counted in Philox blocks: each block of the stream once,
and a slice only the blocks of its own elements (section 2.3: every element draws on block i // 4 alone)."""

from __future__ import annotations

import numpy as np
import pytest

from initserve_client import generate, philox


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
