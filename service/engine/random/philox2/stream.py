"""philox-v2's random stream: Philox4x32-10 keyed by (seed, tensor name), addressed by block index.

The contract (docs/philox-v2.md section 3):

* digest = SHA-256(b"initserve/philox-v2\\x00" + seed as 8 little-endian bytes + the tensor name in UTF-8), read as
  eight little-endian uint32 words d0..d7. The key is (d0, d1); d2, d3 sit in the counter and name the tensor too,
  so two tensors share a stream only if 128 bits of their digests agree.
* the normal's retry stream (docs/philox-v2.md section 7): element i's block n is Philox4x32-10 of the counter
  (i mod 2^32, floor(i / 2^32), n, d6) under the key (d4, d5): a stream of its own per element, addressed by the
  element's index and the retry's number, so that an element rejected by the ziggurat's fast path is redone from
  nothing but its index (slices, chunks and threads give the same bits), and no word of it is a word of the
  values or the mask stream (another key).
* block b (< 2^62: float64 output takes two elements a block) of stream `purpose` (0 = values, 1 = the sparse
  mask) is Philox4x32-10 (Random123) applied to
  the counter (b mod 2^32, (b >> 32) + purpose * 2^31, d2, d3) with key (d0, d1). It yields four uint32 words; word
  j of block b is stream word 4*b + j.

Why 4x32 and not v1's 4x64: a 32x32 -> 64-bit multiply vectorises (vpmuludq), a 64x64 -> 128-bit one does not, so
the numba kernel computes 4 or 8 blocks per instruction instead of one; measured 2.5x the words per second.

This NumPy version is the reference the numba kernels (`philox2.kernels`) are tested against, and it is checked
against Random123's known-answer vectors.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

VALUES = 0
SPARSE_MASK = 1
WORDS_PER_BLOCK = 4

_KEY_DOMAIN = b"initserve/philox-v2\x00"
MULTIPLIERS = (0xD2511F53, 0xCD9E8D57)
WEYL = (0x9E3779B9, 0xBB67AE85)
ROUNDS = 10
_LOW32 = np.uint64(0xFFFFFFFF)
_SHIFT32 = np.uint64(32)


def digest_words(seed: int, name: str) -> tuple[int, ...]:
    """(d0, ..., d7): the key (d0, d1) and the counter's tensor words (d2, d3) of a tensor's streams, the key
    (d4, d5) and the counter word d6 of its normal's retry stream (d7 unused)."""
    if not 0 <= seed < 1 << 64:
        raise ValueError(f"seed must be in [0, 2^64), got {seed}")
    digest = hashlib.sha256(_KEY_DOMAIN + seed.to_bytes(8, "little") + name.encode("utf-8")).digest()
    return tuple(int.from_bytes(digest[4 * j : 4 * j + 4], "little") for j in range(8))


def philox4x32(
    counter: tuple[NDArray[np.uint64], ...], key: tuple[int, int], rounds: int = ROUNDS
) -> NDArray[np.uint64]:
    """Philox4x32 of counters (c0, c1, c2, c3) (uint32 values held in uint64 arrays) under key (k0, k1): an
    (n, 4) uint64 array of the output words. Random123's round, the key bumped between rounds (not before the
    first): (hi0, lo0) = M0 * c0, (hi1, lo1) = M1 * c2, c = (hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0)."""
    c0, c1, c2, c3 = (np.asarray(c, dtype=np.uint64) & _LOW32 for c in counter)
    k0, k1 = key
    for round_ in range(rounds):
        if round_ > 0:
            k0, k1 = (k0 + WEYL[0]) & 0xFFFFFFFF, (k1 + WEYL[1]) & 0xFFFFFFFF
        p0 = np.uint64(MULTIPLIERS[0]) * c0
        p1 = np.uint64(MULTIPLIERS[1]) * c2
        high0, high1 = p0 >> _SHIFT32, p1 >> _SHIFT32
        c0, c1, c2, c3 = high1 ^ c1 ^ np.uint64(k0), p1 & _LOW32, high0 ^ c3 ^ np.uint64(k1), p0 & _LOW32
    return np.stack([c0, c1, c2, c3], axis=-1)


@dataclass(frozen=True)
class Stream:
    """The random words of one tensor under philox-v2; any block of them can be produced on its own."""

    words4: tuple[int, int, int, int]  # (d0, d1, d2, d3) of `digest_words`
    retry3: tuple[int, int, int]  # (d4, d5, d6): the retry stream's key and counter word

    @classmethod
    def for_tensor(cls, seed: int, name: str) -> Stream:
        d = digest_words(seed, name)
        return cls((d[0], d[1], d[2], d[3]), (d[4], d[5], d[6]))

    def block_words(self, blocks: NDArray[np.int64], purpose: int = VALUES) -> NDArray[np.uint64]:
        """The four words of each block of `blocks` (each in [0, 2^62)), as a (len(blocks), 4) array."""
        b = np.asarray(blocks, dtype=np.uint64)
        d0, d1, d2, d3 = self.words4
        counter = (b & _LOW32, (b >> _SHIFT32) + np.uint64(purpose << 31), np.full_like(b, d2), np.full_like(b, d3))
        return philox4x32(counter, (d0, d1))

    def retry_blocks(self, index: NDArray[np.int64], n: int) -> NDArray[np.uint64]:
        """Block n of the retry stream of each element of `index` (each < 2^63), as a (len(index), 4) array."""
        i = np.asarray(index, dtype=np.uint64)
        r4, r5, r6 = self.retry3
        return philox4x32((i & _LOW32, i >> _SHIFT32, np.full_like(i, n), np.full_like(i, r6)), (r4, r5))

    def words(self, start: int, stop: int, purpose: int = VALUES) -> NDArray[np.uint64]:
        """Stream words [start, stop) (uint32 values in a uint64 array): word i is word i % 4 of block i // 4."""
        first, last = start // WORDS_PER_BLOCK, -(-stop // WORDS_PER_BLOCK)
        words = self.block_words(np.arange(first, last, dtype=np.int64), purpose).reshape(-1)
        return words[start - first * WORDS_PER_BLOCK : stop - first * WORDS_PER_BLOCK]
