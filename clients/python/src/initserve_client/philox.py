"""philox-v1's random stream (docs/reproducibility.md section 2): the key from SHA-256 of seed and name, and
Philox4x64-10 blocks computed for whole arrays of counters at once, with the 64x64->128-bit products done in 32-bit
halves in uint64 (NumPy has no wider integer)."""

from __future__ import annotations

import hashlib

import numpy as np

from initserve_client.contract import document

_PHILOX = document()["constants"]["philox4x64_10"]
_M0, _M1 = (np.uint64(int(word, 16)) for word in _PHILOX["multipliers"])
_W0, _W1 = (int(word, 16) for word in _PHILOX["key_increments"])
_ROUNDS = int(_PHILOX["rounds"])
_DOMAIN = bytes.fromhex(document()["constants"]["key_domain_hex"])
_LOW32 = np.uint64(0xFFFFFFFF)
_MASK64 = (1 << 64) - 1
_32 = np.uint64(32)

Words = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def key_input(seed: int, name: str) -> bytes:
    """The SHA-256 input of section 2.1: domain, a zero byte, the seed (8 bytes little-endian), the name in UTF-8."""
    return _DOMAIN + seed.to_bytes(8, "little") + name.encode("utf-8")


def key(seed: int, name: str) -> tuple[int, int]:
    digest = hashlib.sha256(key_input(seed, name)).digest()
    return int.from_bytes(digest[:8], "little"), int.from_bytes(digest[8:16], "little")


def _mulhilo(multiplier: np.uint64, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(high, low) 64-bit halves of the 128-bit product multiplier * x, elementwise."""
    m_lo, m_hi = multiplier & _LOW32, multiplier >> _32
    x_lo, x_hi = x & _LOW32, x >> _32
    lo_lo = m_lo * x_lo
    lo_hi = m_lo * x_hi
    hi_lo = m_hi * x_lo
    middle = (lo_lo >> _32) + (lo_hi & _LOW32) + (hi_lo & _LOW32)  # < 3 * 2^32: no wrap
    high = m_hi * x_hi + (lo_hi >> _32) + (hi_lo >> _32) + (middle >> _32)
    return high, multiplier * x  # uint64 arrays wrap modulo 2^64: the low half


def blocks(key_pair: tuple[int, int], c0: np.ndarray, c1: np.ndarray, c2: np.ndarray, c3: np.ndarray) -> Words:
    """Philox4x64-10 of the counters (c0, c1, c2, c3) (uint64 arrays, or scalars broadcast) under the key."""
    k0, k1 = key_pair  # Python ints: NumPy warns on a wrapping scalar sum
    c0, c1, c2, c3 = (np.asarray(c, dtype=np.uint64) for c in (c0, c1, c2, c3))
    with np.errstate(over="ignore"):  # wrapping products are the point; NumPy warns only for 0-D operands
        for r in range(_ROUNDS):
            if r > 0:
                k0, k1 = (k0 + _W0) & _MASK64, (k1 + _W1) & _MASK64
            hi0, lo0 = _mulhilo(_M0, c0)
            hi1, lo1 = _mulhilo(_M1, c2)
            c0, c1, c2, c3 = hi1 ^ c1 ^ np.uint64(k0), lo1, hi0 ^ c3 ^ np.uint64(k1), lo0
    return c0, c1, c2, c3


def stream_words(key_pair: tuple[int, int], block: np.ndarray, purpose: int) -> np.ndarray:
    """The four words of each block index (uint64, below 2^64) of stream `purpose`, as an array (len(block), 4)."""
    zero = np.uint64(0)
    words = blocks(key_pair, block, zero, np.uint64(purpose), zero)
    return np.stack(np.broadcast_arrays(*words), axis=-1)
