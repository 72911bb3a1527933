"""The Hub protocol against the real server (tests/server.py) with real transformers and huggingface_hub:
from_pretrained and `hf download` with HF_ENDPOINT at 127.0.0.1 (a dead proxy for every other host: no network
beyond loopback), HF_HOME in a temporary directory, HF_HUB_OFFLINE unset. Skipped without the `hf` extra."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from service import hub
from service.cli import main
from service.engine.recipes.transformers import expand_transformers
from tests.server import serve

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

HF_CLI = Path(sys.executable).with_name("hf")
GPT2 = {"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "n_embd": 64, "n_head": 4, "n_layer": 2}
CUSTOM = {"seed": 11, "rng": "philox-v2", "model": {"framework": "transformers", "config": {**GPT2, "vocab_size": 500}}}
SHARD = "60KB"

# Run in a fresh interpreter, as huggingface_hub reads HF_ENDPOINT when imported. Prints one JSON line.
CLIENT = """
import json, sys
import huggingface_hub as hh
from transformers import AutoModelForCausalLM, AutoModelForMaskedLM
out = {}
for repo, auto in (("initserve/tiny-llama-seed7", AutoModelForCausalLM), ("initserve/tiny-qwen2-seed7-bfloat16",
                   AutoModelForCausalLM), ("initserve/tiny-bert-seed2", AutoModelForMaskedLM)):
    model, info = auto.from_pretrained(repo, output_loading_info=True)
    tied = [p.data_ptr() for n, p in model.named_parameters(remove_duplicate=False) if n.endswith(("lm_head.weight",
            "embed_tokens.weight", "decoder.weight", "word_embeddings.weight"))]
    out[repo] = {**{k: sorted(v) for k, v in info.items() if k != "error_msgs"}, "dtype": str(model.dtype),
                 "tied": len(set(tied)) < len(tied), "sha": hh.model_info(repo).sha}
for repo, revision, filename in (("initserve/nope-seed1", "main", "config.json"),
        ("initserve/tiny-llama-seed7", "v2", "config.json"), ("initserve/tiny-llama-seed7", "main", "x.bin")):
    try:
        hh.hf_hub_download(repo, filename, revision=revision)
    except Exception as error:
        out[f"{repo}@{revision}/{filename}"] = type(error).__name__
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def server():
    with serve(env={"INITSERVE_LOG_LEVEL": "warning"}) as (url, _):
        yield url


def client_env(tmp_path: Path, endpoint: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_TOKEN")}
    dead = "http://127.0.0.1:9"  # nothing listens on the discard port: any request to another host fails at once
    return {
        **env,
        "HF_ENDPOINT": endpoint,
        "HF_HOME": str(tmp_path / "hf-home"),
        "HF_HUB_DISABLE_TELEMETRY": "1",
        **{proxy: dead for proxy in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy")},
        "NO_PROXY": "127.0.0.1",
        "no_proxy": "127.0.0.1",
    }


def test_from_pretrained_and_hub_errors_through_the_protocol(server, tmp_path):
    result = subprocess.run(
        [sys.executable, "-c", CLIENT],
        env=client_env(tmp_path, f"{server}/hub"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    for repo in ("initserve/tiny-llama-seed7", "initserve/tiny-qwen2-seed7-bfloat16", "initserve/tiny-bert-seed2"):
        assert out[repo]["missing_keys"] == out[repo]["unexpected_keys"] == out[repo]["mismatched_keys"] == []
        assert out[repo]["sha"] == hub.resolve(None, repo, 4096).commit
    assert out["initserve/tiny-qwen2-seed7-bfloat16"]["dtype"] == "torch.bfloat16"
    assert out["initserve/tiny-qwen2-seed7-bfloat16"]["tied"] and out["initserve/tiny-bert-seed2"]["tied"]
    assert not out["initserve/tiny-llama-seed7"]["tied"]
    assert out["initserve/nope-seed1@main/config.json"] == "RepositoryNotFoundError"
    assert out["initserve/tiny-llama-seed7@v2/config.json"] == "RevisionNotFoundError"
    assert out["initserve/tiny-llama-seed7@main/x.bin"] in ("EntryNotFoundError", "RemoteEntryNotFoundError")


def test_hf_download_of_a_spec_is_the_cli_checkpoint_byte_for_byte(server, tmp_path):
    """`hf download initserve/custom` under the endpoint `initserve checkpoint --endpoint` prints, sharded, equals
    the directory `initserve checkpoint` writes for the same config, seed and shard size; a range of a shard over
    the real server is that file's bytes."""
    config = tmp_path / "config.json"
    config.write_text(json.dumps(CUSTOM["model"]["config"]))
    local = tmp_path / "local"
    cli = ["checkpoint", "--config", str(config), "--seed", "11", "--shard-size", SHARD]
    assert main([*cli, "-o", str(local)]) == 0
    printed = subprocess.run(
        [str(Path(sys.executable).with_name("initserve")), *cli, "--endpoint", server],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    endpoint = printed.stdout.strip()
    assert endpoint == f"{server}/hub/{hub.encode_spec({**CUSTOM, 'shard_size': SHARD})}"
    downloaded = tmp_path / "downloaded"
    result = subprocess.run(
        [str(HF_CLI), "download", "initserve/custom", "--local-dir", str(downloaded)],
        env=client_env(tmp_path, endpoint),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    names = sorted(p.name for p in local.iterdir())
    assert len(names) > 3 and names == sorted(p.name for p in downloaded.iterdir() if not p.name.startswith("."))
    for name in names:
        assert (downloaded / name).read_bytes() == (local / name).read_bytes(), name
    shard = (local / names[2]).read_bytes()
    url = f"{endpoint}/initserve/custom/resolve/main/{names[2]}"
    part = httpx.get(url, headers={"Range": f"bytes=1000-{len(shard) - 7}"}, timeout=30)
    assert part.status_code == 206 and part.content == shard[1000 : len(shard) - 6]


@pytest.mark.parametrize("name", sorted(hub.catalogue()))
def test_catalogue_configs_expand_to_transformers_own_names_and_shapes(name):
    """Each catalogue config, built by transformers on the meta device (no memory), holds exactly the tensors
    the tables write (plus the tied ones save_pretrained leaves out)."""
    config = hub.catalogue()[name]
    model = expand_transformers(config)
    hf_config = transformers.AutoConfig.for_model(**config)
    with torch.device("meta"):
        built = getattr(transformers, model.architecture)(hf_config)
    theirs = {k: tuple(v.shape) for k, v in built.state_dict().items() if k not in model.tied}
    assert theirs == {k: spec.shape for k, spec in model.specs.items()}
    assert list(theirs) == list(model.specs)
