"""Counter-based random streams: Philox4x64-10 keyed by (seed, tensor name), addressed by block index.

The contract (docs/reproducibility.md has the full text):

* key: the first 16 bytes of SHA-256(b"initserve/philox-v1\\x00" + seed as 8 little-endian bytes
  + the tensor name in UTF-8), read as two little-endian uint64 words (k0, k1).
* block b of stream `purpose` (0 = values, 1 = sparse mask) is Philox4x64-10 applied to the 256-bit counter
  (purpose << 128) + b, i.e. words (b mod 2^64, b >> 64, purpose, 0), with key (k0, k1). It yields four
  uint64 words; word j of block b is stream word 4*b + j.

NumPy's `Philox` bit generator increments its counter *before* producing a block, so we start it one below the
first block we want. Its raw output is stable across NumPy versions (unlike `Generator` methods), and a test
checks it against a pure-Python Philox and the Random123 known-answer vector.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

VALUES = 0
SPARSE_MASK = 1
# The far-tail truncated normal's attempts: attempt k reads its proposal from purpose TAIL + 2k and its acceptance
# from TAIL + 2k + 1, word i for element i.
TAIL = 2
WORDS_PER_BLOCK = 4

_KEY_DOMAIN = b"initserve/philox-v1\x00"
_COUNTER_MOD = 1 << 256
_WORD_MOD = 1 << 64
_MULTIPLIERS = (0xD2E7470EE14C6C93, 0xCA5A826395121157)
_WEYL = (0x9E3779B97F4A7C15, 0xBB67AE8584CAA73B)
_LOW32 = np.uint64(0xFFFFFFFF)
_SHIFT32 = np.uint64(32)


def stream_key(seed: int, name: str) -> tuple[int, int]:
    """Philox key (k0, k1) for a tensor: SHA-256 of the domain tag, the 64-bit seed and the name."""
    if not 0 <= seed < 1 << 64:
        raise ValueError(f"seed must be in [0, 2^64), got {seed}")
    digest = hashlib.sha256(_KEY_DOMAIN + seed.to_bytes(8, "little") + name.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "little"), int.from_bytes(digest[8:16], "little")


@dataclass(frozen=True)
class Stream:
    """The random words of one tensor; any range of them can be produced on its own."""

    key: tuple[int, int]

    @classmethod
    def for_tensor(cls, seed: int, name: str) -> Stream:
        return cls(stream_key(seed, name))

    def blocks(self, first_block: int, n_blocks: int, purpose: int = VALUES) -> NDArray[np.uint64]:
        """Words of blocks [first_block, first_block + n_blocks) as a flat uint64 array of 4 * n_blocks."""
        counter = ((purpose << 128) + first_block - 1) % _COUNTER_MOD
        bit_generator = np.random.Philox(key=np.array(self.key, dtype=np.uint64), counter=counter)
        return bit_generator.random_raw(n_blocks * WORDS_PER_BLOCK)

    def blocks_at(self, first_blocks: NDArray[np.int64], n_blocks: int, purpose: int = VALUES) -> NDArray[np.uint64]:
        """Words of blocks [b, b + n_blocks) for every b of `first_blocks` (each < 2^63 - n_blocks), as a
        (len(first_blocks), 4 * n_blocks) array: many short ranges in one vectorised call, where NumPy's `Philox`
        gives one range per generator. The same Philox4x64-10 in uint64 array arithmetic (tests compare it)."""
        blocks = (first_blocks.astype(np.uint64)[:, None] + np.arange(n_blocks, dtype=np.uint64)).reshape(-1)
        zero = np.zeros_like(blocks)
        c0, c1, c2, c3 = blocks, zero, np.full_like(blocks, purpose), zero
        k0, k1 = self.key
        for round_ in range(10):
            if round_ > 0:
                k0, k1 = (k0 + _WEYL[0]) % _WORD_MOD, (k1 + _WEYL[1]) % _WORD_MOD
            hi0, lo0 = _mul_wide(_MULTIPLIERS[0], c0)
            hi1, lo1 = _mul_wide(_MULTIPLIERS[1], c2)
            c0, c1, c2, c3 = hi1 ^ c1 ^ np.uint64(k0), lo1, hi0 ^ c3 ^ np.uint64(k1), lo0
        return np.stack([c0, c1, c2, c3], axis=1).reshape(first_blocks.size, WORDS_PER_BLOCK * n_blocks)

    def words(self, start: int, stop: int, purpose: int = VALUES) -> NDArray[np.uint64]:
        """Stream words [start, stop): word i is word i % 4 of block i // 4."""
        first_block = start // WORDS_PER_BLOCK
        last_block = -(-stop // WORDS_PER_BLOCK)
        words = self.blocks(first_block, last_block - first_block, purpose)
        offset = start - first_block * WORDS_PER_BLOCK
        return words[offset : offset + (stop - start)]


def _mul_wide(a: int, b: NDArray[np.uint64]) -> tuple[NDArray[np.uint64], NDArray[np.uint64]]:
    """(high, low) 64-bit halves of the 128-bit products a * b, from 32-bit limbs (no partial sum exceeds 2^64)."""
    a_lo, a_hi = np.uint64(a & 0xFFFFFFFF), np.uint64(a >> 32)
    b_lo, b_hi = b & _LOW32, b >> _SHIFT32
    low_low, low_high, high_low = a_lo * b_lo, a_lo * b_hi, a_hi * b_lo
    middle = (low_low >> _SHIFT32) + (low_high & _LOW32) + (high_low & _LOW32)
    high = a_hi * b_hi + (low_high >> _SHIFT32) + (high_low >> _SHIFT32) + (middle >> _SHIFT32)
    return high, np.uint64(a) * b
