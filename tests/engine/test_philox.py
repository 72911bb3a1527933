"""Philox4x64-10 streams: a pure-Python reference, the Random123 known answer and the documented counter map.

The reference below is written from the Random123 specification (Salmon et al., SC'11) with Python integers,
independently of NumPy's bit generator that service.engine.random.philox drives.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from service.engine.random.philox import SPARSE_MASK, VALUES, WORDS_PER_BLOCK, Stream, stream_key

MASK64 = (1 << 64) - 1
PHILOX_M0 = 0xD2E7470EE14C6C93
PHILOX_M1 = 0xCA5A826395121157
PHILOX_W0 = 0x9E3779B97F4A7C15
PHILOX_W1 = 0xBB67AE8584CAA73B
ROUNDS = 10


def mulhilo(a: int, b: int) -> tuple[int, int]:
    product = a * b
    return product >> 64, product & MASK64


def philox4x64(counter: tuple[int, int, int, int], key: tuple[int, int], rounds: int = ROUNDS) -> list[int]:
    x0, x1, x2, x3 = counter
    k0, k1 = key
    for r in range(rounds):
        if r:
            k0 = (k0 + PHILOX_W0) & MASK64
            k1 = (k1 + PHILOX_W1) & MASK64
        hi0, lo0 = mulhilo(PHILOX_M0, x0)
        hi1, lo1 = mulhilo(PHILOX_M1, x2)
        x0, x1, x2, x3 = hi1 ^ x1 ^ k0, lo1, hi0 ^ x3 ^ k1, lo0
    return [x0, x1, x2, x3]


def reference_block(key: tuple[int, int], block: int, purpose: int = VALUES) -> list[int]:
    """Block `block` of stream `purpose` per the docstring: counter words (b mod 2^64, b >> 64, purpose, 0)."""
    assert 0 <= block < 1 << 128
    return philox4x64((block & MASK64, block >> 64, purpose, 0), key)


def reference_words(key: tuple[int, int], start: int, stop: int, purpose: int = VALUES) -> list[int]:
    out = []
    for i in range(start, stop):
        out.append(reference_block(key, i // 4, purpose)[i % 4])
    return out


# ---- the reference itself ---------------------------------------------------------------------------------


def test_reference_matches_random123_known_answer():
    # Random123 kat_vectors: "philox4x64 10" with counter 0 and key 0.
    expected = [0x16554D9ECA36314C, 0xDB20FE9D672D0FDC, 0xD7E772CEE186176B, 0x7E68B68AEC7BA23B]
    assert philox4x64((0, 0, 0, 0), (0, 0)) == expected


def test_reference_matches_random123_known_answers_all_ones_and_pi():
    # The other two Random123 kat_vectors for philox4x64-10.
    ones = (MASK64,) * 4
    assert philox4x64(ones, (MASK64, MASK64)) == [
        0x87B092C3013FE90B,
        0x438C3C67BE8D0224,
        0x9CC7D7C69CD777B6,
        0xA09CAEBF594F0BA0,
    ]
    pi_ctr = (0x243F6A8885A308D3, 0x13198A2E03707344, 0xA4093822299F31D0, 0x082EFA98EC4E6C89)
    pi_key = (0x452821E638D01377, 0xBE5466CF34E90C6C)
    assert philox4x64(pi_ctr, pi_key) == [
        0xA528F45403E61D95,
        0x38C72DBD566E9788,
        0xA5A1610E72FD18B5,
        0x57BD43B5E52B7FE6,
    ]


# ---- the engine's stream against the reference ------------------------------------------------------------


def test_engine_block_zero_with_key_zero_is_the_known_answer():
    words = Stream((0, 0)).blocks(0, 1)
    assert words.dtype == np.uint64
    assert [int(w) for w in words] == [
        0x16554D9ECA36314C,
        0xDB20FE9D672D0FDC,
        0xD7E772CEE186176B,
        0x7E68B68AEC7BA23B,
    ]


KEYS = [(0, 0), (1, 0), (0, 1), (MASK64, MASK64), (0x0123456789ABCDEF, 0xFEDCBA9876543210), stream_key(7, "weight")]
BLOCKS = [0, 1, 2, 7, 1000, MASK64 - 1, MASK64, 1 << 64, (1 << 64) + 5, (1 << 100) + 3, (1 << 128) - 3]


@pytest.mark.parametrize("key", KEYS)
@pytest.mark.parametrize("purpose", [VALUES, SPARSE_MASK])
def test_blocks_follow_documented_counter_mapping(key, purpose):
    for block in BLOCKS:
        got = [int(w) for w in Stream(key).blocks(block, 3, purpose)]
        expected = [w for b in range(block, block + 3) for w in reference_block(key, b, purpose)]
        assert got == expected, f"key={key} block={block} purpose={purpose}"


def test_purposes_are_distinct_streams():
    stream = Stream.for_tensor(7, "weight")
    assert not np.array_equal(stream.blocks(0, 4, VALUES), stream.blocks(0, 4, SPARSE_MASK))


def test_block_carry_crosses_the_64_bit_boundary():
    # Blocks 2^64 - 1 and 2^64 in one call: the counter must carry into its second word.
    key = (3, 5)
    got = [int(w) for w in Stream(key).blocks(MASK64, 2)]
    assert got == reference_block(key, MASK64) + reference_block(key, 1 << 64)
    assert reference_block(key, 1 << 64) != reference_block(key, 0)


@pytest.mark.parametrize("key", KEYS[:4])
def test_words_follow_block_layout(key):
    for purpose in (VALUES, SPARSE_MASK):
        ranges = [(0, 0), (0, 1), (0, 4), (1, 6), (3, 13), (4, 8), (17, 18), (4 * MASK64 + 2, 4 * MASK64 + 11)]
        for start, stop in ranges:
            got = [int(w) for w in Stream(key).words(start, stop, purpose)]
            assert got == reference_words(key, start, stop, purpose), (start, stop, purpose)


# ---- the key ------------------------------------------------------------------------------------------------


def independent_key(seed: int, name: str) -> tuple[int, int]:
    message = b"initserve/philox-v1" + b"\x00" + seed.to_bytes(8, "little") + name.encode("utf-8")
    digest = hashlib.sha256(message).digest()
    return int.from_bytes(digest[0:8], "little"), int.from_bytes(digest[8:16], "little")


@pytest.mark.parametrize(
    ("seed", "name"),
    [(0, ""), (0, "weight"), (7, "weight"), (7, "bias"), (2**64 - 1, "layer.0.weight"), (123456789, "Gewicht-é-Ω-層")],
)
def test_stream_key_is_sha256_of_domain_seed_name(seed, name):
    key = stream_key(seed, name)
    assert key == independent_key(seed, name)
    assert Stream.for_tensor(seed, name).key == key


def test_stream_key_pinned_values():
    # Pinned: a change of the key derivation (domain tag, byte order, hash) changes every tensor.
    assert stream_key(7, "weight") == (0xFC18DDA89479A019, 0x84E126847CAE1495)
    assert stream_key(0, "") == (0x6365482B380B9D0E, 0x54230EB493928165)


@pytest.mark.parametrize("seed", [-1, 2**64])
def test_stream_key_rejects_out_of_range_seed(seed):
    with pytest.raises(ValueError, match="seed must be in"):
        stream_key(seed, "weight")


def test_seed_and_name_both_change_the_key():
    keys = {stream_key(s, n) for s in (0, 1, 2**32) for n in ("weight", "bias", "weight ")}
    assert len(keys) == 9


# ---- random access ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("purpose", [VALUES, SPARSE_MASK])
def test_words_slices_equal_slices_of_a_larger_call(purpose):
    stream = Stream.for_tensor(2024, "conv1.weight")
    total = 5000
    whole = stream.words(0, total, purpose)
    assert whole.shape == (total,)
    rng = np.random.default_rng(12345)
    for _ in range(300):
        start, stop = sorted(int(v) for v in rng.integers(0, total + 1, 2))
        part = stream.words(start, stop, purpose)
        assert part.dtype == np.uint64
        np.testing.assert_array_equal(part, whole[start:stop])


def test_words_far_offsets_equal_slices_of_a_larger_call():
    stream = Stream.for_tensor(1, "w")
    base = 4 * (1 << 64) - 37  # straddles the 2^64-th block
    whole = stream.words(base, base + 200)
    rng = np.random.default_rng(3)
    for _ in range(50):
        start, stop = sorted(int(v) for v in rng.integers(0, 201, 2))
        np.testing.assert_array_equal(stream.words(base + start, base + stop), whole[start:stop])


def test_blocks_length():
    assert Stream((1, 2)).blocks(5, 7).shape == (7 * WORDS_PER_BLOCK,)


@pytest.mark.parametrize("purpose", [VALUES, SPARSE_MASK])
def test_blocks_at_many_places_equal_numpys_philox(purpose):
    """The vectorised port (many short ranges in one call, for strided regions) against NumPy's generator."""
    stream = Stream((0xFC18DDA89479A019, 0x84E126847CAE1495))
    firsts = np.array([0, 1, 5, 2**32 - 1, 2**40 + 3, 2**61 - 7, 2**63 - 4], dtype=np.int64)
    got = stream.blocks_at(firsts, 3, purpose)
    assert got.shape == (firsts.size, 3 * WORDS_PER_BLOCK)
    for row, first in zip(got, firsts, strict=True):
        assert row.tobytes() == stream.blocks(int(first), 3, purpose).tobytes()
