"""numba samplers: runs of flat elements of a distribution, written straight into the output array.

Each sampler takes `starts` and `length`: run r is elements [starts[r], starts[r] + length), written to
out[r * length : (r + 1) * length]. A contiguous range is one run; a strided region (a column shard) is many
short ones in a single call, each costing its own whole Philox blocks only.

Each kernel reproduces `Distribution.transform` of the NumPy reference bit for bit (see compiled.base for why) and
rounds on the store, so a float32 output never goes through a float64 array. They work through the range in
tiles of `TILE` elements: Philox words for the tile's blocks into a small buffer (scalar code: there is no
vector 64x64->128-bit multiply), then a branch-free loop that LLVM vectorises turns them into values. Both
buffers stay in L1, so memory sees only the output writes. `out` is float64 or float32.

`source` is the Philox stream when empty (`PHILOX`, what the engine passes); otherwise its words stand for the
stream's (word i of element i), so the tests run these very functions on chosen words such as 0 and 2^64 - 1.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import typeof
from numpy.typing import NDArray

from service.engine.random.compiled.base import inline, jit
from service.engine.random.compiled.detmath import (
    is_central,
    log_normal,
    ndtri,
    ndtri_central,
    sincos_turns,
    small_int_f64,
)
from service.engine.random.compiled.philox import fill_words

TILE = 1024  # elements per tile, a multiple of 4
MAX_STOP = (1 << 63) - 1  # one past the last element index the kernels address (int64)
PHILOX = np.empty(0, np.uint64)
_HIGH32 = np.uint64(32)
_TOP52 = np.uint64(12)
_TOP53 = np.uint64(11)
_LOW21 = np.uint64((1 << 21) - 1)
_TWO_POW_M53 = 2.0**-53
_TWO_POW_M52 = 2.0**-52


@inline
def _top53(word: np.uint64) -> float:
    """float64(word >> 11), exactly, as (high 32 bits) * 2^21 + (next 21 bits): both parts convert exactly."""
    return small_int_f64(word >> _HIGH32) * 2097152.0 + small_int_f64((word >> _TOP53) & _LOW21)


@inline
def _tile_words(
    k0: np.uint64, k1: np.uint64, source: NDArray[np.uint64], i: int, stop: int, words: NDArray[np.uint64]
) -> tuple[int, int]:
    """Words of the blocks covering [i, tile end) into `words`; returns (tile end, offset of element i).

    No int64 overflow for 0 <= i < stop <= 2^63 - 1 (every index the engine can address): `tile_first` <= i,
    so `stop - tile_first` is in [1, 2^63 - 1] and `end` <= stop; `first_block * 4 + TILE` is never formed, as it
    exceeds 2^63 - 1 for i >= 2^63 - TILE. Then n_blocks <= TILE / 4 (the buffer) and first_block + j < 2^61.
    """
    first_block = i // 4
    tile_first = first_block * 4
    end = stop if stop - tile_first <= TILE else tile_first + TILE
    n_blocks = (end - tile_first + 3) // 4
    if source.size == 0:
        fill_words(k0, k1, first_block, n_blocks, words)
    else:
        words[: 4 * n_blocks] = source[4 * first_block : 4 * (first_block + n_blocks)]
    return end, i - tile_first


@inline
def uniform_words(
    words: NDArray[np.uint64], offset: int, count: int, low: float, width: float, out: NDArray, base: int
) -> None:
    """out[base:base + count] = Uniform(low, low + width) of words[offset:offset + count]."""
    for e in range(count):
        out[base + e] = low + width * (_top53(words[offset + e]) * _TWO_POW_M53)


@inline
def normal_words(
    words: NDArray[np.uint64],
    offset: int,
    count: int,
    mean: float,
    std: float,
    z: NDArray[np.float64],
    out: NDArray,
    base: int,
) -> None:
    """out[base:base + count] = Normal(mean, std) of words[offset:offset + count] (whole pairs in `words`).

    Box-Muller as variates.standard_normal: pair k = words (2k, 2k+1) -> z[2k] = r cos, z[2k+1] = r sin.
    `z` is scratch space for at least offset + count (rounded up to even) float64.
    """
    for k in range((offset + count + 1) // 2):
        u1 = (_top53(words[2 * k]) + 1.0) * _TWO_POW_M53
        turns = _top53(words[2 * k + 1]) * _TWO_POW_M53
        radius = np.sqrt(-2.0 * log_normal(u1))
        sin, cos = sincos_turns(turns)
        z[2 * k] = radius * cos
        z[2 * k + 1] = radius * sin
    for e in range(count):
        out[base + e] = mean + std * z[offset + e]


@inline
def _truncate(z: float, mirrored: bool, mean: float, std: float, a: float, b: float) -> float:
    """TruncatedNormal.transform after ndtri: negate if mirrored, mean + std * z, np.clip to [a, b]."""
    if mirrored:
        z = -z
    x = mean + std * z
    # np.clip is max(x, a) then min(., b), each as NumPy's loop does it (NaN passes through)
    x = x if (x > a) | (x != x) else a
    return x if (x < b) | (x != x) else b


@inline
def truncated_normal_words(
    words: NDArray[np.uint64],
    offset: int,
    count: int,
    p_lo: float,
    mass: float,
    mirrored: bool,
    mean: float,
    std: float,
    a: float,
    b: float,
    p: NDArray[np.float64],
    out: NDArray,
    base: int,
) -> None:
    """out[base:base + count] = TruncatedNormal of words[offset:offset + count]: z = ndtri(p_lo + u * mass).

    ndtri's central rational function (|p - 0.5| <= 0.425: most elements for common bounds) runs vectorised
    on every element; a second, scalar pass redoes only the others with the full ndtri (log, sqrt).
    `p` is scratch space for at least `count` float64.
    """
    for e in range(count):
        u = (small_int_f64(words[offset + e] >> _TOP52) + 0.5) * _TWO_POW_M52
        p[e] = p_lo + u * mass
        out[base + e] = _truncate(ndtri_central(p[e]), mirrored, mean, std, a, b)
    # A search loop (early exit) on purpose: LLVM would vectorise a plain loop by computing ndtri everywhere.
    e = 0
    while e < count:
        while e < count and is_central(p[e]):
            e += 1
        if e < count:
            out[base + e] = _truncate(ndtri(p[e]), mirrored, mean, std, a, b)
            e += 1


@inline
def _check_runs(starts: NDArray[np.int64], length: int, out: NDArray, source: NDArray[np.uint64]) -> None:
    """Refuse what would index outside `out` or `source`, or overflow int64: numba checks no bounds.

    After it, every run [s, s + length) has 0 <= s and s + length <= 2^63 - 1 (so `_tile_words` is exact), and
    run r writes out[r * length, (r + 1) * length), inside `out` as len(starts) * length <= out.size.
    """
    if length < 0 or (length > 0 and starts.size > out.size // length):
        raise ValueError("out is too small for the runs")
    for r in range(starts.size):
        if starts[r] < 0 or starts[r] > MAX_STOP - length:
            raise ValueError("a run lies outside [0, 2^63 - 1)")
        stop = starts[r] + length
        if source.size and stop // 4 + (stop % 4 != 0) > source.size // 4:
            raise ValueError("a run needs words beyond the source")


@jit
def uniform(
    k0: np.uint64,
    k1: np.uint64,
    starts: NDArray[np.int64],
    length: int,
    low: float,
    width: float,
    out: NDArray,
    source: NDArray[np.uint64],
) -> None:
    """Uniform(low, low + width) of value-stream key (k0, k1)."""
    _check_runs(starts, length, out, source)
    words = np.empty(TILE, np.uint64)
    for r in range(starts.size):
        i, stop = starts[r], starts[r] + length
        while i < stop:
            end, offset = _tile_words(k0, k1, source, i, stop, words)
            uniform_words(words, offset, end - i, low, width, out, r * length + i - starts[r])
            i = end


@jit
def normal(
    k0: np.uint64,
    k1: np.uint64,
    starts: NDArray[np.int64],
    length: int,
    mean: float,
    std: float,
    out: NDArray,
    source: NDArray[np.uint64],
) -> None:
    """Normal(mean, std) of value-stream key (k0, k1)."""
    _check_runs(starts, length, out, source)
    words = np.empty(TILE, np.uint64)
    z = np.empty(TILE, np.float64)
    for r in range(starts.size):
        i, stop = starts[r], starts[r] + length
        while i < stop:
            end, offset = _tile_words(k0, k1, source, i, stop, words)
            normal_words(words, offset, end - i, mean, std, z, out, r * length + i - starts[r])
            i = end


@jit
def truncated_normal(
    k0: np.uint64,
    k1: np.uint64,
    starts: NDArray[np.int64],
    length: int,
    p_lo: float,
    mass: float,
    mirrored: bool,
    mean: float,
    std: float,
    a: float,
    b: float,
    out: NDArray,
    source: NDArray[np.uint64],
) -> None:
    """TruncatedNormal(mean, std, a, b) of value-stream key (k0, k1), given its p_lo = Phi(lo), mass."""
    _check_runs(starts, length, out, source)
    words = np.empty(TILE, np.uint64)
    p = np.empty(TILE, np.float64)
    for r in range(starts.size):
        i, stop = starts[r], starts[r] + length
        while i < stop:
            end, offset = _tile_words(k0, k1, source, i, stop, words)
            truncated_normal_words(
                words, offset, end - i, p_lo, mass, mirrored, mean, std, a, b, p, out, r * length + i - starts[r]
            )
            i = end


@jit
def words(k0: np.uint64, k1: np.uint64, start: int, stop: int, out: NDArray[np.uint64]) -> None:
    """Value-stream words [start, stop) (what `Stream.words` returns): lets the tests check the Philox port."""
    if not 0 <= start <= stop <= MAX_STOP or stop - start > out.size:
        raise ValueError("words [start, stop) must lie in [0, 2^63 - 1) and fit in out")
    buffer = np.empty(TILE, np.uint64)
    i = start
    while i < stop:
        end, offset = _tile_words(k0, k1, PHILOX, i, stop, buffer)
        out[i - start : end - start] = buffer[offset : offset + end - i]
        i = end


def serving_signatures() -> list[tuple[str, Any, tuple[Any, ...]]]:
    """(name, kernel, argument types) of every kernel the engine calls, in the order the warm-up compiles them:
    float32 output (the default) first, then float64. `words`, which only the tests call, is left out: it alone
    took a third of a cold start."""
    key, starts = np.uint64(0), np.zeros(1, np.int64)
    signatures = []
    for dtype in (np.float32, np.float64):
        out = np.empty(4, dtype)
        for kernel, args in (
            (uniform, (key, key, starts, 4, 0.0, 1.0, out, PHILOX)),
            (normal, (key, key, starts, 4, 0.0, 1.0, out, PHILOX)),
            (truncated_normal, (key, key, starts, 4, 0.1, 0.8, False, 0.0, 1.0, -2.0, 2.0, out, PHILOX)),
        ):
            name = f"{kernel.__name__} {out.dtype.name}"
            signatures.append((name, kernel, tuple(typeof(arg) for arg in args)))
    return signatures
