"""The README's "Try it" examples, run as written against the real server: every curl line and the Python example
do what their comments say (the .npy is the same tensor, the GET shard is bit-identical to the POST one, the
conditional request prints 304, the bfloat16 hint loads bfloat16)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

from tests.server import CONSOLE_SCRIPT, serve

README = Path(__file__).resolve().parents[1] / "README.md"
pytestmark = pytest.mark.skipif(
    not CONSOLE_SCRIPT.exists() or shutil.which("curl") is None, reason="needs the console script and curl"
)


def _block(language: str) -> str:
    """The first fenced block of `language` under "## Try it"."""
    section = README.read_text().split("## Try it", 1)[1]
    match = re.search(rf"```{language}\n(.*?)```", section, re.S)
    assert match is not None, language
    return match.group(1)


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    with serve() as (base, _):
        yield base


def test_the_curl_examples_do_what_their_comments_say(url: str, tmp_path: Path) -> None:
    script = _block("sh").replace("localhost:8000", url.removeprefix("http://"))
    run = subprocess.run(["bash", "-e", "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    # JSON answers end without a newline, so the next output follows on their line
    assert "identical\n" in run.stdout  # the GET shard is the POST shard, byte for byte
    assert "304\n" in run.stdout
    assert '"detail"' not in run.stdout  # no example is refused (the one error shape)
    # "the same tensor as .npy": the .npy holds what the safetensors file holds
    np.testing.assert_array_equal(
        np.load(tmp_path / "weight.npy"), load_file(tmp_path / "weight.safetensors")["weight"]
    )


def test_the_python_example_runs_as_written(url: str, tmp_path: Path) -> None:
    checks = '\nassert weight.dtype.name == "bfloat16" and weight.shape == (256, 784), weight.dtype\n'
    script = _block("python").replace("http://localhost:8000", url) + checks
    run = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr


def test_the_torch_example_is_torchs_own_bytes(url: str, tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")  # CI's torch step; tests/conftest.py pins its AVX2 kernels
    line = next(line for line in _block("sh").splitlines() if '"rng":"torch-2.13"' in line)
    run = subprocess.run(
        ["bash", "-e", "-c", line.replace("localhost:8000", url.removeprefix("http://"))],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    torch.manual_seed(7)
    weight = torch.nn.init.kaiming_normal_(torch.empty(256, 784))
    np.save(tmp_path / "reference.npy", weight.numpy())
    assert (tmp_path / "torch_weight.npy").read_bytes() == (tmp_path / "reference.npy").read_bytes()
