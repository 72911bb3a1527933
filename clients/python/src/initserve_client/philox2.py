"""philox-v2's random streams (docs/philox-v2.md sections 3-4): the digest words from SHA-256 of seed and name, and
Philox4x32-10 blocks for whole arrays of counters at once. Each 32-bit word sits in a uint64 lane, so a round's
32x32 -> 64-bit products are exact NumPy uint64 multiplies."""

from __future__ import annotations

import hashlib

import numpy as np

from initserve_client.contract import document

_CONSTANTS = document("philox-v2")["constants"]
_PHILOX = _CONSTANTS["philox4x32_10"]
_M0, _M1 = (np.uint64(int(word, 16)) for word in _PHILOX["multipliers"])
_W0, _W1 = (int(word, 16) for word in _PHILOX["key_increments"])
_ROUNDS = int(_PHILOX["rounds"])
_DOMAIN = bytes.fromhex(_CONSTANTS["key_domain_hex"])
_LOW32 = np.uint64(0xFFFFFFFF)
_32 = np.uint64(32)
_PURPOSE_BIT = 1 << 31  # section 3: the purpose rides in the top bit of the counter's second word

Words = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def key_input(seed: int, name: str) -> bytes:
    """Section 3's SHA-256 input: the domain (its zero byte included), the seed (8 bytes little-endian), the name."""
    return _DOMAIN + seed.to_bytes(8, "little") + name.encode("utf-8")


def digest_words(seed: int, name: str) -> tuple[int, ...]:
    """d0 .. d7: the digest as eight little-endian uint32 (d0, d1: the stream key; d2, d3: the stream counter's
    high half; d4, d5: the retry key; d6: the retry counter's last word)."""
    digest = hashlib.sha256(key_input(seed, name)).digest()
    return tuple(int.from_bytes(digest[4 * j : 4 * j + 4], "little") for j in range(8))


def blocks(key: tuple[int, int], c0: np.ndarray, c1: np.ndarray, c2: np.ndarray, c3: np.ndarray) -> Words:
    """Philox4x32-10 (section 4) of the counters (32-bit values in uint64 arrays, or scalars broadcast)."""
    k0, k1 = key  # Python ints: NumPy warns on a wrapping scalar sum
    c0, c1, c2, c3 = (np.asarray(c, dtype=np.uint64) for c in (c0, c1, c2, c3))
    for r in range(_ROUNDS):
        if r > 0:
            k0, k1 = (k0 + _W0) & 0xFFFFFFFF, (k1 + _W1) & 0xFFFFFFFF
        p0 = _M0 * c0  # < 2^64: exact
        p1 = _M1 * c2
        c0, c1, c2, c3 = (p1 >> _32) ^ c1 ^ np.uint64(k0), p1 & _LOW32, (p0 >> _32) ^ c3 ^ np.uint64(k1), p0 & _LOW32
    return c0, c1, c2, c3


def _stack(words: Words) -> np.ndarray:
    return np.stack(np.broadcast_arrays(*words), axis=-1)


def stream_words(words: tuple[int, ...], block: np.ndarray, purpose: int) -> np.ndarray:
    """The four 32-bit words of each block index (uint64, below 2^62) of stream `purpose` (section 3), as an array
    (len(block), 4)."""
    block = np.asarray(block, dtype=np.uint64)
    high = (block >> _32) + np.uint64(purpose * _PURPOSE_BIT)
    return _stack(blocks((words[0], words[1]), block & _LOW32, high, np.uint64(words[2]), np.uint64(words[3])))


def retry_blocks(words: tuple[int, ...], element: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Block n of each element's retry stream (section 3), as an array (len(element), 4)."""
    element = np.asarray(element, dtype=np.uint64)
    counter = (element & _LOW32, element >> _32, np.asarray(n, dtype=np.uint64), np.uint64(words[6]))
    return _stack(blocks((words[4], words[5]), *counter))


def retry_words(words: tuple[int, ...], element: np.ndarray, k: np.ndarray) -> np.ndarray:
    """The 64-bit retry words R_i[k] of each element i (section 3): R_i[2n] = o0 * 2^32 + o1, R_i[2n+1] = o2 * 2^32
    + o3 of its block n."""
    k = np.asarray(k, dtype=np.uint64)
    out = retry_blocks(words, element, k >> np.uint64(1))
    second = (k & np.uint64(1)).astype(bool)
    high = np.where(second, out[:, 2], out[:, 0])
    low = np.where(second, out[:, 3], out[:, 1])
    return (high << _32) | low
