"""The client is a light distribution of its own: it declares httpx, numpy and ml_dtypes only, and importing it
loads none of the server's packages, nor torch."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"
SERVER_ONLY = ("service", "fastapi", "pydantic", "uvicorn", "orjson", "numba", "safetensors", "scipy", "torch")


def test_it_declares_only_httpx_numpy_and_ml_dtypes():
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    names = sorted(spec.split(">")[0].split("<")[0].split("=")[0].strip() for spec in project["dependencies"])
    assert names == ["httpx", "ml-dtypes", "numpy"]
    assert project["name"] == "initserve-client"


def test_importing_it_loads_no_server_package_and_no_torch():
    probe = f"import sys, initserve_client\nprint(sorted(m for m in {SERVER_ONLY!r} if m in sys.modules))"
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    assert run.stdout.strip() == "[]"
