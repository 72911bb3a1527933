"""normal_fill_avx2 against torch 2.13's own float32 `normal_` (its AVX2 kernel), bit for bit.

torch runs in a subprocess: this file run as a script, with ATEN_CPU_CAPABILITY=avx2 set before torch is imported
(this pytest process may have imported torch already, at whatever capability the CPU offers). The script compares
and prints a JSON summary that the tests check.

Besides seeded tensors, it feeds torch chosen uniforms: a generator state whose next 608 MT19937 words are any
words we like (the state words are the untempered outputs, `left` = 624 so no twist happens first), so torch's
transform runs on a buffer of our choosing. Every float32 uniform is k * 2^-24 for k < 2^24, so two passes cover
every input: the radius of every u1 (with u2 = 0, cos = 1), then cos and sin of every u2 (with the u1 whose radius
is exactly 1). The output, fma(radius * cos, std, mean), is then two IEEE operations on verified values.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib.util import find_spec
from typing import Any

import numpy as np
import pytest

from service.engine.random.torch213.normal_avx2 import normal_fill_avx2

KAIMING_STD = 2**0.5 / 784**0.5  # kaiming_normal_ of a [256, 784] weight: 0.0505...
SEEDED = [  # (seed, numel, mean, std)
    (0, 16, 0.0, 1.0),
    (1, 32, 0.0, 1.0),
    (2**32 + 5, 4096, 0.0, 1.0),
    (2**63, 4096, 0.3, KAIMING_STD),
    (123, 10**6, 0.3, KAIMING_STD),
    (7, 10**6, -2.5, 3.7),
    *((seed, 4096, 0.3, KAIMING_STD) for seed in range(100, 300)),
]
WORDS_PER_CALL = 608  # 38 blocks: all a crafted state can give before MT19937 twists (623 words)
UNIT_RADIUS_K = 6601320  # u1 = 1 - k * 2^-24 has radius exactly 1.0 (checked by the script)
CALLS_PER_CHUNK = 2048


def uniforms(seed: int, n: int) -> np.ndarray:
    """torch's float32 uniforms after torch.manual_seed(seed): (word & 0xFFFFFF) * 2^-24 of its MT19937 words,
    which NumPy's legacy RandomState seeded with the low 32 bits also gives."""
    words = np.random.RandomState(seed & 0xFFFFFFFF).randint(0, 2**32, n, dtype=np.uint64)
    return lattice(words & 0xFFFFFF)


def lattice(k: np.ndarray) -> np.ndarray:
    return k.astype(np.float32) * np.float32(2.0**-24)


def test_rejects_what_torch_would_not_hand_it() -> None:
    for bad in (np.zeros(24, np.float32), np.zeros(16, np.float64), np.zeros((16, 2), np.float32)[:, 0]):
        with pytest.raises(ValueError, match="multiple of 16"):
            normal_fill_avx2(bad, 0.0, 1.0)


def test_a_block_is_box_muller() -> None:
    """Without torch: the transform is the textbook one to float32 accuracy (catches gross slips only)."""
    data = uniforms(3, 1 << 14)
    u1, u2 = data.reshape(-1, 2, 8)[:, 0].astype(np.float64), data.reshape(-1, 2, 8)[:, 1].astype(np.float64)
    radius = np.sqrt(-2 * np.log1p(-u1))
    normal_fill_avx2(data, 0.5, 2.0)
    out = data.reshape(-1, 2, 8)
    np.testing.assert_allclose(out[:, 0], 0.5 + 2 * radius * np.cos(2 * np.pi * u2), atol=2e-5)
    np.testing.assert_allclose(out[:, 1], 0.5 + 2 * radius * np.sin(2 * np.pi * u2), atol=2e-5)


@pytest.fixture(scope="module")
def torch_side() -> dict[str, Any]:
    if find_spec("torch") is None:
        pytest.skip("torch is not installed (pip install -e '.[test,torch]')")
    env = {**os.environ, "ATEN_CPU_CAPABILITY": "avx2"}
    done = subprocess.run([sys.executable, __file__], env=env, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def test_torch_ran_its_avx2_kernel(torch_side: dict[str, Any]) -> None:
    assert torch_side["capability"] == "AVX2"


def test_seeded_tensors_equal_torch(torch_side: dict[str, Any]) -> None:
    seeded = torch_side["seeded"]
    assert seeded["checked"] == sum(n for _, n, _, _ in SEEDED)
    assert seeded["mismatches"] == [], seeded["mismatches"][:5]


@pytest.mark.parametrize("name", ["radius", "sincos"])
def test_every_float32_uniform_equals_torch(torch_side: dict[str, Any], name: str) -> None:
    result = torch_side[name]
    assert result["checked"] == 1 << 24
    assert result["mismatches"] == 0, result["first"]


# --- the torch side: run as a script ---------------------------------------------------------------------------


def _temper(y: np.ndarray) -> np.ndarray:
    y = y ^ (y >> 11)
    y ^= (y << 7) & 0x9D2C5680
    y ^= (y << 15) & 0xEFC60000
    return (y ^ (y >> 18)) & 0xFFFFFFFF


def _untemper(y: np.ndarray) -> np.ndarray:
    """The MT19937 state word that tempers to y."""
    y = y ^ (y >> 18)
    y ^= (y << 15) & 0xEFC60000
    x = y
    for _ in range(4):  # y ^= (y << 7) & mask fixes 7 more low bits per round
        x = y ^ ((x << 7) & 0x9D2C5680)
    y = x & 0xFFFFFFFF
    x = y
    for _ in range(2):
        x = y ^ (x >> 11)
    return x


class _Crafted:
    """Generator states whose next words are chosen ones (CPUGeneratorImpl's legacy state layout: seed u64,
    left i32, seeded i32, next u64, state u64[624], then the normal caches)."""

    def __init__(self, torch: Any) -> None:
        self.torch = torch
        self.generator = torch.Generator()
        self.generator.manual_seed(0)
        self.template = self.generator.get_state().numpy().copy()
        self.template[8:12] = np.frombuffer(np.int32(624).tobytes(), np.uint8)  # left: 623 words before a twist
        self.template[16:24] = 0  # next: word 0

    def states(self, words: np.ndarray) -> np.ndarray:
        """One state per row of `words` (calls x 608 uint64): its next 608 words are that row's."""
        state = np.zeros((words.shape[0], 624), np.uint64)
        state[:, :WORDS_PER_CALL] = _untemper(words)
        states = np.repeat(self.template[None], words.shape[0], axis=0)
        states[:, 24 : 24 + 8 * 624] = state.view(np.uint8)
        return states

    def normals(self, words: np.ndarray, mean: float, std: float) -> np.ndarray:
        """torch's normal_ of 608 elements from each row of `words`."""
        states = self.states(words)
        out = self.torch.empty(words.shape[0], WORDS_PER_CALL)
        for row in range(words.shape[0]):
            self.generator.set_state(self.torch.from_numpy(states[row]))
            out[row].normal_(mean, std, generator=self.generator)
        return out.numpy()


def _pass(crafted: _Crafted, make_blocks: Any) -> dict[str, Any]:
    """Compare over all 2^24 k: make_blocks(k) gives the (len(k) // 8, 16) k values of the blocks."""
    per_call = WORDS_PER_CALL // 2
    ks = np.arange(1 << 24, dtype=np.uint64)
    ks = np.concatenate([ks, np.zeros(-len(ks) % per_call, np.uint64)])  # whole calls (k = 0 again)
    mismatches, first = 0, []
    for start in range(0, len(ks), CALLS_PER_CHUNK * per_call):
        words = make_blocks(ks[start : start + CALLS_PER_CHUNK * per_call]).reshape(-1, WORDS_PER_CALL)
        theirs = crafted.normals(words, 0.0, 1.0).reshape(-1)
        ours = lattice(words.reshape(-1))
        normal_fill_avx2(ours, 0.0, 1.0)
        bad = np.flatnonzero(theirs.view(np.int32) != ours.view(np.int32))
        mismatches += len(bad)
        first += [(int(words.reshape(-1)[i]), float(theirs[i]), float(ours[i])) for i in bad[: 5 - len(first)]]
    return {"checked": 1 << 24, "mismatches": mismatches, "first": first}


def _radius_blocks(k: np.ndarray) -> np.ndarray:
    blocks = np.zeros((len(k) // 8, 16), np.uint64)
    blocks[:, :8] = k.reshape(-1, 8)
    return blocks


def _sincos_blocks(k: np.ndarray) -> np.ndarray:
    blocks = np.full((len(k) // 8, 16), UNIT_RADIUS_K, np.uint64)
    blocks[:, 8:] = k.reshape(-1, 8)
    return blocks


def _torch_side() -> dict[str, Any]:
    import torch

    unit = np.zeros(16, np.float32)
    unit[:8] = lattice(np.array([UNIT_RADIUS_K], np.uint64))
    normal_fill_avx2(unit, 0.0, 1.0)
    assert unit[0] == 1.0, "UNIT_RADIUS_K no longer gives radius 1"

    words = np.random.RandomState(5).randint(0, 2**32, (1, WORDS_PER_CALL), dtype=np.uint64)
    assert np.array_equal(_temper(_untemper(words)), words)
    crafted = _Crafted(torch)
    crafted.generator.set_state(torch.from_numpy(crafted.states(words)[0]))
    drawn = torch.empty(WORDS_PER_CALL).uniform_(generator=crafted.generator).numpy()
    assert np.array_equal(drawn, lattice(words[0] & 0xFFFFFF)), "a crafted state does not give the chosen words"
    mismatches = []
    for seed, n, mean, std in SEEDED:
        torch.manual_seed(seed)
        theirs = torch.empty(n).normal_(mean, std).numpy()
        ours = uniforms(seed, n)
        normal_fill_avx2(ours, mean, std)
        bad = np.flatnonzero(theirs.view(np.int32) != ours.view(np.int32))
        mismatches += [(seed, n, int(i), float(theirs[i]), float(ours[i])) for i in bad[:3]]
    return {
        "capability": torch.backends.cpu.get_cpu_capability(),
        "seeded": {"checked": sum(n for _, n, _, _ in SEEDED), "mismatches": mismatches},
        "radius": _pass(crafted, _radius_blocks),
        "sincos": _pass(crafted, _sincos_blocks),
    }


if __name__ == "__main__":
    print(json.dumps(_torch_side()))
