"""numba kernels of philox-v2: Philox4x32-10 blocks and the samplers, bit for bit `philox2.samplers`' NumPy reference.

Each sampler takes `starts` and `length` (run r is elements [starts[r], starts[r] + length), written to
out[r * length : (r + 1) * length]; one run for a contiguous range) and works through a run in tiles of `TILE`
elements, as the philox-v1 samplers do (`random.compiled.samplers`, whose reasons hold here): the tile's Philox
blocks into a small buffer, then branch-free loops that LLVM vectorises. Unlike philox-v1's 64x64 -> 128-bit
multiply, Philox4x32's 32x32 -> 64-bit one vectorises (vpmuludq), so the block loop itself runs 4 or 8 blocks per
instruction: bench/philox_v2.py measures it.

`wide` selects the element's draw: False (float32, float16, bfloat16 output) one 32-bit word, element i's word i;
True (float64 output) one 64-bit word V_i = (w[2i] << 32) | w[2i+1]. The samplers' own float64 arithmetic follows
docs/philox-v2.md section 3 operation for operation.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import typeof
from numpy.typing import NDArray

from service.engine.random.compiled.base import inline, jit, trailing_zeros
from service.engine.random.compiled.detmath import is_central, log_normal, ndtri, ndtri_central
from service.engine.random.compiled.detmath import small_int_f64 as _small
from service.engine.random.compiled.samplers import MAX_STOP
from service.engine.random.philox2 import ziggurat

TILE = 1024  # elements per tile, a multiple of 8
PENDING = 2 * TILE  # the normal's elements off the fast path, redone when more than PENDING - TILE are held
# The full ndtri inlined, so that a loop of it vectorises: the very function (same operations, same bits).
_ndtri = inline(ndtri.py_func)
_M0 = np.uint64(0xD2511F53)
_M1 = np.uint64(0xCD9E8D57)
_W0 = np.uint64(0x9E3779B9)
_W1 = np.uint64(0xBB67AE85)
_LOW32 = np.uint64(0xFFFFFFFF)
_LOW21 = np.uint64((1 << 21) - 1)
_S32 = np.uint64(32)
_S11 = np.uint64(11)
_S12 = np.uint64(12)
_TWO_POW_M32 = 2.0**-32
_TWO_POW_M52 = 2.0**-52
_TWO_POW_M53 = 2.0**-53
_LAYER = np.uint64(ziggurat.LAYERS - 1)
_ONE = np.uint64(1)
_S3 = np.uint64(3)
_S8 = np.uint64(8)
_S9 = np.uint64(9)
# The ziggurat's tables (numba freezes global arrays into the compiled code).
_X = ziggurat.X
_F = ziggurat.F
_R = float(ziggurat.R)
_SCALE_NARROW = ziggurat.SCALE_NARROW
_SCALE_WIDE = ziggurat.SCALE_WIDE
_LIMIT_NARROW = ziggurat.LIMIT_NARROW
_LIMIT_WIDE = ziggurat.LIMIT_WIDE


@inline
def _block(
    c0: np.uint64, c1: np.uint64, c2: np.uint64, c3: np.uint64, k0: np.uint64, k1: np.uint64
) -> tuple[np.uint64, np.uint64, np.uint64, np.uint64]:
    """Philox4x32-10 (philox2.stream.philox4x32) on uint32 values held in uint64 (the products fit)."""
    for round_ in range(10):
        if round_ > 0:
            k0 = (k0 + _W0) & _LOW32
            k1 = (k1 + _W1) & _LOW32
        p0 = _M0 * c0
        p1 = _M1 * c2
        c0, c1, c2, c3 = (p1 >> _S32) ^ c1 ^ k0, p1 & _LOW32, (p0 >> _S32) ^ c3 ^ k1, p0 & _LOW32
    return c0, c1, c2, c3


@inline
def _tile(
    key: tuple[np.uint64, np.uint64, np.uint64, np.uint64],
    purpose: int,
    wide: bool,
    i: int,
    stop: int,
    words: NDArray[np.uint64],
) -> tuple[int, int]:
    """The words of the blocks covering elements [i, tile end) into `words`; returns (tile end, offset of element
    i). Element e's draw is then words[e] or, when `wide`, `_wide(words, e)`. Indices stay below 2^63 as in the v1
    samplers' `_tile_words`."""
    per_block = 2 if wide else 4
    first_block = i // per_block
    tile_first = first_block * per_block
    end = stop if stop - tile_first <= TILE else tile_first + TILE
    n_blocks = (end - tile_first + per_block - 1) // per_block
    k0, k1, d2, d3 = key
    high = np.uint64(purpose << 31)
    for j in range(n_blocks):
        b = np.uint64(first_block + j)
        w0, w1, w2, w3 = _block(b & _LOW32, (b >> _S32) + high, d2, d3, k0, k1)
        words[4 * j] = w0
        words[4 * j + 1] = w1
        words[4 * j + 2] = w2
        words[4 * j + 3] = w3
    return end, i - tile_first


@inline
def _wide(words: NDArray[np.uint64], e: int) -> np.uint64:
    """The 64-bit draw V_e = (w[2e] << 32) | w[2e + 1]. Read where used: merging the words in place in `_tile`
    stopped LLVM vectorising the loops after it."""
    return (words[2 * e] << _S32) | words[2 * e + 1]


@inline
def _top53(word: np.uint64) -> float:
    """float64(word >> 11), exactly (the v1 samplers' conversion: two parts that convert exactly)."""
    return _small(word >> _S32) * 2097152.0 + _small((word >> _S11) & _LOW21)


@inline
def _check(starts: NDArray[np.int64], length: int, out: NDArray) -> None:
    """Refuse runs outside [0, 2^63 - 1) or beyond `out`: numba checks no bounds."""
    if length < 0 or (length > 0 and starts.size > out.size // length):
        raise ValueError("out is too small for the runs")
    for r in range(starts.size):
        if starts[r] < 0 or starts[r] > MAX_STOP - length:
            raise ValueError("a run lies outside [0, 2^63 - 1)")


@inline
def _uniform_tile(
    words: NDArray[np.uint64],
    offset: int,
    count: int,
    wide: bool,
    low: float,
    width: float,
    top: float,
    out: NDArray,
    base: int,
) -> None:
    if wide:
        for e in range(count):
            x = low + width * (_top53(_wide(words, offset + e)) * _TWO_POW_M53)
            out[base + e] = x if x < top else top
    else:
        for e in range(count):
            x = low + width * (_small(words[offset + e]) * _TWO_POW_M32)
            out[base + e] = x if x < top else top


@inline
def _uniform(
    k0: np.uint64,
    k1: np.uint64,
    d2: np.uint64,
    d3: np.uint64,
    starts: NDArray[np.int64],
    length: int,
    wide: bool,
    low: float,
    width: float,
    top: float,
    out: NDArray,
) -> None:
    """x = min(low + width * u, top), u = word * 2^-32 or (V >> 11) * 2^-53."""
    _check(starts, length, out)
    key = (k0, k1, d2, d3)
    words = np.empty(2 * TILE, np.uint64)  # a wide tile holds TILE / 2 blocks of 4 words
    for r in range(starts.size):
        i, stop = starts[r], starts[r] + length
        while i < stop:
            end, offset = _tile(key, 0, wide, i, stop, words)
            _uniform_tile(words, offset, end - i, wide, low, width, top, out, r * length + i - starts[r])
            i = end


@jit
def uniform32(
    k0: np.uint64,
    k1: np.uint64,
    d2: np.uint64,
    d3: np.uint64,
    starts: NDArray[np.int64],
    length: int,
    low: float,
    width: float,
    top: float,
    out: NDArray,
) -> None:
    """`_uniform` for float32, float16 and bfloat16 output (one 32-bit word per element)."""
    _uniform(k0, k1, d2, d3, starts, length, False, low, width, top, out)


@jit
def uniform64(
    k0: np.uint64,
    k1: np.uint64,
    d2: np.uint64,
    d3: np.uint64,
    starts: NDArray[np.int64],
    length: int,
    low: float,
    width: float,
    top: float,
    out: NDArray,
) -> None:
    """`_uniform` for float64 output (one 64-bit draw per element)."""
    _uniform(k0, k1, d2, d3, starts, length, True, low, width, top, out)


@inline
def _retry_word(r4: np.uint64, r5: np.uint64, r6: np.uint64, i: int, k: int) -> np.uint64:
    """Element i's retry word R[k] (ziggurat.retry_word): words 2(k mod 2), 2(k mod 2) + 1 of retry block k // 2."""
    b = np.uint64(i)
    w0, w1, w2, w3 = _block(b & _LOW32, b >> _S32, np.uint64(k // 2), r6, r4, r5)
    return (w0 << _S32) | w1 if k % 2 == 0 else (w2 << _S32) | w3


@inline
def _uniform52(word: np.uint64) -> float:
    """A retry word as a uniform in (0, 1): ((W >> 12) + 0.5) * 2^-52."""
    return (_small(word >> _S12) + 0.5) * _TWO_POW_M52


@jit
def _redo(r4: np.uint64, r5: np.uint64, r6: np.uint64, i: int, j: int, negative: bool, x: float) -> float:
    """ziggurat.redo, then the sign: the signed z of element i whose first try (j, negative, x) left the fast path.
    Scalar and rare (about 1 element in 1,000), so a compiled function of its own rather than inlined."""
    k = 0
    while not x < _X[j + 1]:
        if j == 0:  # beyond r: Marsaglia's tail method
            while True:
                a = -log_normal(_uniform52(_retry_word(r4, r5, r6, i, k))) / _R
                b = -log_normal(_uniform52(_retry_word(r4, r5, r6, i, k + 1)))
                k += 2
                if b + b > a * a:
                    x = _R + a
                    break
            break
        y = _F[j] + _uniform52(_retry_word(r4, r5, r6, i, k)) * (_F[j + 1] - _F[j])
        k += 1
        if -2.0 * log_normal(y) > x * x:
            break  # under f in the wedge
        word = _retry_word(r4, r5, r6, i, k)  # rejected: a new try, from a whole retry word
        k += 1
        j = int(word & _LAYER)
        negative = ((word >> _S8) & _ONE) == _ONE
        x = (_small(word >> _S12) + 0.5) * _SCALE_WIDE[j]
    return -x if negative else x


@inline
def _fast_path(
    draws: NDArray[np.uint64],
    first: int,
    count: int,
    shift: np.uint64,
    scale: NDArray[np.float64],
    limit: NDArray[np.uint64],
    mean: float,
    std: float,
    out: NDArray,
    base: int,
    flags: NDArray[np.uint8],
) -> None:
    """Every element's first try, x = (m + 0.5) * scale[j] signed, into out, and flags[e] = 1 where the try is not
    under f (m >= limit[j]), 0 up to the next multiple of 8: one loop, which LLVM vectorises with the table reads
    as gathers (split into two loops, the second pass over the draws cost more than the flags)."""
    for e in range(count):
        draw = draws[first + e]
        j = draw & _LAYER
        x = (_small(draw >> shift) + 0.5) * scale[j]
        out[base + e] = mean + std * (-x if (draw >> _S8) & _ONE else x)
        flags[e] = (draw >> shift) >= limit[j]
    for e in range(count, (count + 7) // 8 * 8):
        flags[e] = 0


@inline
def _list_flagged(
    flags: NDArray[np.uint8],
    count: int,
    draws: NDArray[np.uint64],
    first: int,
    i: int,
    base: int,
    n: int,
    element: NDArray[np.int64],
    position: NDArray[np.int64],
    pending: NDArray[np.uint64],
) -> int:
    """Append the flagged elements (stream index, output position, draw) to the pending lists from entry n; returns
    the new count. The flags are read 8 at a time as one word and only their set bits visited (about 1 element in
    70 is flagged): a branch-free pass over every element cost twice as much."""
    words = flags.view(np.uint64)  # flag e is byte e % 8 of word e // 8: numba targets little-endian CPUs only
    for w in range((count + 7) // 8):
        word = words[w]
        while word:
            e = 8 * w + (trailing_zeros(word) >> _S3)
            element[n] = i + e
            position[n] = base + e
            pending[n] = draws[first + e]
            n += 1
            word &= word - _ONE
    return n


@inline
def _retry(
    n: int,
    element: NDArray[np.int64],
    position: NDArray[np.int64],
    pending: NDArray[np.uint64],
    shift: np.uint64,
    scale: NDArray[np.float64],
    r4: np.uint64,
    r5: np.uint64,
    r6: np.uint64,
    mean: float,
    std: float,
    out: NDArray,
    x: NDArray[np.float64],
    low: NDArray[np.float64],
    height: NDArray[np.float64],
    wedge: NDArray[np.bool_],
    kept: NDArray[np.bool_],
    again: NDArray[np.uint64],
) -> None:
    """The n pending elements, whose first try left the fast path: their retry block 0 at once, vectorised (the
    first try's wedge test, and where it rejects, the fast path of the second try from R[1]); then `_redo` for the
    rest (the tail, and a second try off the fast path)."""
    for q in range(n):
        draw = pending[q]
        j = draw & _LAYER
        x[q] = (_small(draw >> shift) + 0.5) * scale[j]
        low[q] = _F[j]
        height[q] = _F[j + _ONE] - _F[j]
        wedge[q] = j > 0
    for q in range(n):
        b = np.uint64(element[q])
        w0, w1, w2, w3 = _block(b & _LOW32, b >> _S32, np.uint64(0), r6, r4, r5)
        y = low[q] + _uniform52((w0 << _S32) | w1) * height[q]
        kept[q] = wedge[q] & (-2.0 * log_normal(y) > x[q] * x[q])
        again[q] = (w2 << _S32) | w3
    for q in range(n):
        if kept[q]:  # under f in the wedge: the fast path's value stands
            continue
        if wedge[q]:  # rejected: the second try, from R[1]
            j = again[q] & _LAYER
            x2 = (_small(again[q] >> _S12) + 0.5) * _SCALE_WIDE[j]
            if x2 < _X[j + _ONE]:
                out[position[q]] = mean + std * (-x2 if (again[q] >> _S8) & _ONE else x2)
                continue
        draw = pending[q]
        z = _redo(r4, r5, r6, element[q], int(draw & _LAYER), ((draw >> _S8) & _ONE) == _ONE, x[q])
        out[position[q]] = mean + std * z


@inline
def _normal(
    k0: np.uint64,
    k1: np.uint64,
    d2: np.uint64,
    d3: np.uint64,
    r4: np.uint64,
    r5: np.uint64,
    r6: np.uint64,
    starts: NDArray[np.int64],
    length: int,
    wide: bool,
    mean: float,
    std: float,
    out: NDArray,
) -> None:
    """The ziggurat (philox2.ziggurat.standard_normal, operation for operation) a tile at a time: the fast path for
    every element (`_fast_path`); the 1.5% it flags are held (`_list_flagged`) and redone `PENDING - TILE` or more
    at once (`_retry`): vectorised loops over a few elements a tile cost more than the work in them."""
    _check(starts, length, out)
    key = (k0, k1, d2, d3)
    words = np.empty(2 * TILE, np.uint64)  # a wide tile holds TILE / 2 blocks of 4 words
    merged = np.empty(TILE, np.uint64)  # a wide tile's 64-bit draws
    flags = np.empty(TILE, np.uint8)
    element = np.empty(PENDING, np.int64)
    position = np.empty(PENDING, np.int64)
    pending = np.empty(PENDING, np.uint64)
    x = np.empty(PENDING, np.float64)
    low = np.empty(PENDING, np.float64)
    height = np.empty(PENDING, np.float64)
    wedge = np.empty(PENDING, np.bool_)
    kept = np.empty(PENDING, np.bool_)
    again = np.empty(PENDING, np.uint64)
    scale = _SCALE_WIDE if wide else _SCALE_NARROW
    limit = _LIMIT_WIDE if wide else _LIMIT_NARROW
    shift = _S12 if wide else _S9
    n = 0
    for r in range(starts.size):
        i, stop = starts[r], starts[r] + length
        while i < stop:
            end, offset = _tile(key, 0, wide, i, stop, words)
            count = end - i
            base = r * length + i - starts[r]
            if wide:
                for e in range(count):
                    merged[e] = _wide(words, offset + e)
                draws, first = merged, 0
            else:
                draws, first = words, offset
            _fast_path(draws, first, count, shift, scale, limit, mean, std, out, base, flags)
            n = _list_flagged(flags, count, draws, first, i, base, n, element, position, pending)
            if n > PENDING - TILE:
                _retry(
                    n,
                    element,
                    position,
                    pending,
                    shift,
                    scale,
                    r4,
                    r5,
                    r6,
                    mean,
                    std,
                    out,
                    x,
                    low,
                    height,
                    wedge,
                    kept,
                    again,
                )
                n = 0
            i = end
    _retry(n, element, position, pending, shift, scale, r4, r5, r6, mean, std, out, x, low, height, wedge, kept, again)


@jit
def normal32(
    k0: np.uint64,
    k1: np.uint64,
    d2: np.uint64,
    d3: np.uint64,
    r4: np.uint64,
    r5: np.uint64,
    r6: np.uint64,
    starts: NDArray[np.int64],
    length: int,
    mean: float,
    std: float,
    out: NDArray,
) -> None:
    """`_normal` for float32, float16 and bfloat16 output (one 32-bit word per element)."""
    _normal(k0, k1, d2, d3, r4, r5, r6, starts, length, False, mean, std, out)


@jit
def normal64(
    k0: np.uint64,
    k1: np.uint64,
    d2: np.uint64,
    d3: np.uint64,
    r4: np.uint64,
    r5: np.uint64,
    r6: np.uint64,
    starts: NDArray[np.int64],
    length: int,
    mean: float,
    std: float,
    out: NDArray,
) -> None:
    """`_normal` for float64 output (one 64-bit draw per element)."""
    _normal(k0, k1, d2, d3, r4, r5, r6, starts, length, True, mean, std, out)


@inline
def _clip(z: float, mirrored: bool, mean: float, std: float, low: float, high: float) -> float:
    """Negate if mirrored, mean + std * z, then max with low and min with high (no NaN reaches here)."""
    if mirrored:
        z = -z
    x = mean + std * z
    x = x if x > low else low
    return x if x < high else high


@inline
def _truncated_normal(
    k0: np.uint64,
    k1: np.uint64,
    d2: np.uint64,
    d3: np.uint64,
    starts: NDArray[np.int64],
    length: int,
    wide: bool,
    p_lo: float,
    mass: float,
    mirrored: bool,
    mean: float,
    std: float,
    low: float,
    high: float,
    out: NDArray,
) -> None:
    """z = ndtri(p_lo + u * mass), u = (word + 0.5) * 2^-32 or ((V >> 12) + 0.5) * 2^-52; clipped to [low, high].

    ndtri's central branch runs vectorised for every element, then the full ndtri for the others only
    (|p - 0.5| > 0.425), vectorised over a list of them."""
    _check(starts, length, out)
    key = (k0, k1, d2, d3)
    words = np.empty(2 * TILE, np.uint64)  # a wide tile holds TILE / 2 blocks of 4 words
    p = np.empty(TILE, np.float64)
    q = np.empty(TILE, np.float64)
    listed = np.empty(TILE, np.int64)
    for r in range(starts.size):
        i, stop = starts[r], starts[r] + length
        while i < stop:
            end, offset = _tile(key, 0, wide, i, stop, words)
            count = end - i
            if wide:
                for e in range(count):
                    p[e] = p_lo + ((_small(_wide(words, offset + e) >> _S12) + 0.5) * _TWO_POW_M52) * mass
            else:
                for e in range(count):
                    p[e] = p_lo + ((_small(words[offset + e]) + 0.5) * _TWO_POW_M32) * mass
            base = r * length + i - starts[r]
            for e in range(count):
                out[base + e] = _clip(ndtri_central(p[e]), mirrored, mean, std, low, high)
            # The others (p in the tails) are listed, then redone with the full ndtri in a loop of their own, which
            # vectorises too: philox-v1's one-by-one scalar pass took 60% of the time at the +-2 std bounds.
            tails = 0
            for e in range(count):
                listed[tails] = e
                tails += 0 if is_central(p[e]) else 1
            for j in range(tails):
                q[j] = p[listed[j]]
            for j in range(tails):
                q[j] = _ndtri(q[j])
            for j in range(tails):
                out[base + listed[j]] = _clip(q[j], mirrored, mean, std, low, high)
            i = end


@jit
def truncated_normal32(
    k0: np.uint64,
    k1: np.uint64,
    d2: np.uint64,
    d3: np.uint64,
    starts: NDArray[np.int64],
    length: int,
    p_lo: float,
    mass: float,
    mirrored: bool,
    mean: float,
    std: float,
    low: float,
    high: float,
    out: NDArray,
) -> None:
    """`_truncated_normal` for float32, float16 and bfloat16 output (one 32-bit word per element)."""
    _truncated_normal(k0, k1, d2, d3, starts, length, False, p_lo, mass, mirrored, mean, std, low, high, out)


@jit
def truncated_normal64(
    k0: np.uint64,
    k1: np.uint64,
    d2: np.uint64,
    d3: np.uint64,
    starts: NDArray[np.int64],
    length: int,
    p_lo: float,
    mass: float,
    mirrored: bool,
    mean: float,
    std: float,
    low: float,
    high: float,
    out: NDArray,
) -> None:
    """`_truncated_normal` for float64 output (one 64-bit draw per element)."""
    _truncated_normal(k0, k1, d2, d3, starts, length, True, p_lo, mass, mirrored, mean, std, low, high, out)


@jit
def words(
    k0: np.uint64, k1: np.uint64, d2: np.uint64, d3: np.uint64, purpose: int, start: int, stop: int, out: NDArray
) -> None:
    """Stream words [start, stop) of `purpose` (philox2.stream.Stream.words): the sparse mask, and the tests."""
    if not 0 <= start <= stop <= MAX_STOP or stop - start > out.size:
        raise ValueError("words [start, stop) must lie in [0, 2^63 - 1) and fit in out")
    key = (k0, k1, d2, d3)
    buffer = np.empty(2 * TILE, np.uint64)
    i = start
    while i < stop:
        end, offset = _tile(key, purpose, False, i, stop, buffer)
        out[i - start : end - start] = buffer[offset : offset + end - i]
        i = end


def serving_signatures() -> list[tuple[str, Any, tuple[Any, ...]]]:
    """(name, kernel, argument types) of every kernel philox-v2's requests call: 32-bit draws (float32, float16,
    bfloat16 output, written as float32) first, then float64."""
    key, starts = np.uint64(0), np.zeros(1, np.int64)
    signatures = []
    for width, dtype in ((32, np.float32), (64, np.float64)):
        out = np.empty(4, dtype)
        for name, args in (
            ("uniform", (key, key, key, key, starts, 4, 0.0, 1.0, 0.5, out)),
            ("normal", (key, key, key, key, key, key, key, starts, 4, 0.0, 1.0, out)),
            ("truncated_normal", (key, key, key, key, starts, 4, 0.1, 0.8, False, 0.0, 1.0, -2.0, 2.0, out)),
        ):
            kernel = globals()[f"{name}{width}"]
            signatures.append((f"philox-v2 {name}{width}", kernel, tuple(typeof(arg) for arg in args)))
    mask = np.empty(4, np.uint64)
    signatures.append(("philox-v2 words", words, tuple(typeof(a) for a in (key, key, key, key, 1, 0, 4, mask))))
    return signatures
