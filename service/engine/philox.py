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

RNG_ID = "philox-v1"
VALUES = 0
SPARSE_MASK = 1
WORDS_PER_BLOCK = 4

_KEY_DOMAIN = b"initserve/philox-v1\x00"
_COUNTER_MOD = 1 << 256


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

    def words(self, start: int, stop: int, purpose: int = VALUES) -> NDArray[np.uint64]:
        """Stream words [start, stop): word i is word i % 4 of block i // 4."""
        first_block = start // WORDS_PER_BLOCK
        last_block = -(-stop // WORDS_PER_BLOCK)
        words = self.blocks(first_block, last_block - first_block, purpose)
        offset = start - first_block * WORDS_PER_BLOCK
        return words[offset : offset + (stop - start)]
