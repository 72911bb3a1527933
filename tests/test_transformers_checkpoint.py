"""`initserve checkpoint` directories against transformers itself: from_pretrained loads them with no missing,
unexpected or mismatched key, tied weights are tied, and every tensor is distributed as a fresh from_config
model's (constants exactly; random tensors by a two-sample KS test pooled over seeds, which a wrong std fails).
Without transformers (the `hf` extra) only the layout tests run."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from service import checkpoint
from service.cli import main
from service.engine.bundle import ModelRequest, plan_model
from service.engine.recipes.transformers import expand_transformers
from tests.engine.test_transformers import BERT, GPT2, LLAMA

SEEDS = (0, 1, 2)
# Large enough for the KS test to see a std off by 2x in every random tensor, small enough to build in a second.
WIDE = {"hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 4}
MODELS = {
    "LlamaForCausalLM": {**LLAMA, **WIDE, "pad_token_id": 2},
    "MistralForCausalLM": {**LLAMA, **WIDE, "model_type": "mistral", "architectures": ["MistralForCausalLM"]},
    "Qwen2ForCausalLM": {
        **LLAMA,
        **WIDE,
        "model_type": "qwen2",
        "architectures": ["Qwen2ForCausalLM"],
        "tie_word_embeddings": True,
    },
    "GPT2LMHeadModel": {**GPT2, "n_embd": 64, "architectures": ["GPT2LMHeadModel"]},
    "BertForMaskedLM": {**BERT, **WIDE, "architectures": ["BertForMaskedLM"]},
    "BertModel": {**BERT, **WIDE, "architectures": ["BertModel"]},
}
KS_ALPHA = 1e-4  # per tensor; the seeds are fixed, so the outcome is too


def write(tmp_path: Path, config: dict, seed: int, *args: str) -> Path:
    source = tmp_path / f"config-{seed}.json"
    source.write_text(json.dumps(config))
    out = tmp_path / f"ckpt-{seed}"
    assert main(["checkpoint", "--config", str(source), "--seed", str(seed), "-o", str(out), *args]) == 0
    return out


def test_layout_single_file_and_shards(tmp_path):
    """One model.safetensors below the shard size; above it, huggingface_hub's shards and index."""
    single = write(tmp_path, MODELS["LlamaForCausalLM"], 0)
    assert sorted(p.name for p in single.iterdir()) == ["config.json", "model.safetensors"]
    sharded = write(tmp_path, MODELS["LlamaForCausalLM"], 1, "--shard-size", "40KB")
    names = sorted(p.name for p in sharded.iterdir())
    count = len(names) - 2
    assert count > 2 and names[-1] == "model.safetensors.index.json"
    assert names[1:-1] == [f"model-{k:05d}-of-{count:05d}.safetensors" for k in range(1, count + 1)]
    index = json.loads((sharded / "model.safetensors.index.json").read_text())
    model = expand_transformers(MODELS["LlamaForCausalLM"])
    assert list(index["weight_map"]) == sorted(model.specs)
    sizes = {name: 4 * int(np.prod(spec.shape)) for name, spec in model.specs.items()}
    assert index["metadata"] == {"total_parameters": sum(sizes.values()) // 4, "total_size": sum(sizes.values())}
    for k in range(1, count + 1):  # each shard under the size unless one tensor alone is larger
        shard = [n for n, f in index["weight_map"].items() if f == f"model-{k:05d}-of-{count:05d}.safetensors"]
        assert sum(sizes[n] for n in shard) <= 40_000 or len(shard) == 1
    # Rewritten unsharded into the same directory: the earlier shards and index are gone (save_pretrained's rule).
    source = tmp_path / "config-1.json"
    assert main(["checkpoint", "--config", str(source), "--seed", "1", "-o", str(sharded)]) == 0
    assert sorted(p.name for p in sharded.iterdir()) == ["config.json", "model.safetensors"]


def test_the_files_hold_the_tensors_post_init_answers(tmp_path, client):
    """The CLI (philox-v2 by default) and the HTTP API expand one request to the same tensors, bit for bit, whatever
    the sharding."""
    from safetensors.numpy import load, load_file

    config = MODELS["GPT2LMHeadModel"]
    directory = write(tmp_path, config, 5, "--shard-size", "50KB")
    on_disk = {}
    for shard in sorted(directory.glob("model-*.safetensors")):
        on_disk.update(load_file(shard))
    response = client.post(
        "/init", json={"seed": 5, "rng": "philox-v2", "model": {"framework": "transformers", "config": config}}
    )
    served = load(response.content)
    assert sorted(on_disk) == sorted(served) == sorted(expand_transformers(config).specs)
    assert all(on_disk[name].tobytes() == served[name].tobytes() for name in served)


def test_shards_cut_as_huggingface_hub_does():
    class Sized:
        def __init__(self, nbytes):
            self.nbytes = nbytes

    cut = checkpoint.shards([Sized(n) for n in (6, 6, 2, 6, 2, 2, 11, 1)], 10)  # type: ignore[list-item]
    assert [[t.nbytes for t in shard] for shard in cut] == [[6], [6, 2], [11], [6, 2, 2], [1]]


@pytest.mark.parametrize(("text", "size"), [("5GB", 5 * 10**9), ("500mb", 5 * 10**8), ("1.5KB", 1500), ("64", 64)])
def test_shard_sizes_parse_as_save_pretrained(text, size):
    assert checkpoint.parse_size(text) == size


def test_bad_input_is_an_error_naming_it(tmp_path, capsys):
    source = tmp_path / "config.json"
    source.write_text(json.dumps({**LLAMA, "model_type": "falcon"}))
    assert main(["checkpoint", "--config", str(source), "--seed", "1", "-o", str(tmp_path / "x")]) == 2
    assert "unsupported model_type 'falcon'" in capsys.readouterr().err
    source.write_text(json.dumps(LLAMA))
    assert main(["checkpoint", "--config", str(source), "--seed", "1", "-o", str(tmp_path / "x"), "--shard-size", "x"])
    assert "shard size" in capsys.readouterr().err
    assert main(["checkpoint", "--config", str(tmp_path / "missing.json"), "--seed", "1", "-o", str(tmp_path)]) == 2


def test_written_chunk_by_chunk():
    """Memory stays bounded by the chunk, whatever the tensor: every piece of a file after its header is at most
    one chunk of one tensor (counted; a 7B model is this with larger numbers)."""
    config = {**LLAMA, "vocab_size": 5000, "hidden_size": 256, "intermediate_size": 512, "num_attention_heads": 8}
    planned = checkpoint.plan_checkpoint(expand_transformers(config), 3, "philox-v1", 10**9)
    chunk = 1 << 12
    file = planned.files()["model.safetensors"]
    sizes = [len(memoryview(part).cast("B")) for part in file.read(0, file.length, chunk)]
    assert sum(sizes) == file.length
    assert max(sizes[1:]) == 4 * chunk < 5000 * 256 * 4  # the embedding, 1280 chunks
    assert len(sizes) - 1 == sum(-(-int(np.prod(t.shape)) // chunk) for shard in planned.shards for t in shard)


torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
stats = pytest.importorskip("scipy.stats")


def load(directory: Path, architecture: str):
    model, info = getattr(transformers, architecture).from_pretrained(str(directory), output_loading_info=True)
    return model, info


def fresh(config: dict, architecture: str, seed: int):
    fields = {k: v for k, v in config.items() if k not in ("model_type", "architectures")}
    torch.manual_seed(seed)
    return getattr(transformers, architecture)(transformers.AutoConfig.for_model(config["model_type"], **fields))


def pooled(states: list[dict], names) -> dict[str, np.ndarray]:
    return {name: np.concatenate([s[name].float().numpy().ravel() for s in states]) for name in names}


def differing(ours: dict[str, np.ndarray], theirs: dict[str, np.ndarray], random: set[str]) -> list[str]:
    """The tensors whose values are not distributed alike: constants compared exactly, random ones by KS."""
    bad = []
    for name, values in ours.items():
        if name in random:
            if stats.ks_2samp(values, theirs[name]).pvalue < KS_ALPHA:
                bad.append(name)
        elif not np.array_equal(values, theirs[name]):
            bad.append(name)
    return bad


@pytest.mark.parametrize("architecture", list(MODELS))
def test_from_pretrained_loads_and_matches_from_config(tmp_path, architecture):
    config = MODELS[architecture]
    model = expand_transformers(config)
    states, loaded = [], None
    for seed in SEEDS:
        loaded, info = load(write(tmp_path, config, seed, "--shard-size", "100KB"), architecture)
        assert info == {"missing_keys": set(), "unexpected_keys": set(), "mismatched_keys": set(), "error_msgs": []}
        states.append(loaded.state_dict())
    assert loaded.dtype == torch.float32
    for target, source in model.tied.items():
        assert loaded.get_parameter(target) is loaded.get_parameter(source), target
    theirs = [fresh(config, architecture, seed).state_dict() for seed in SEEDS]
    random = {name for name, spec in model.specs.items() if spec.scheme == "normal"}
    assert random and differing(pooled(states, model.specs), pooled(theirs, model.specs), random) == []


def test_a_wrong_std_fails_the_comparison():
    """Negative control: GPT-2 without its scaled residual init (c_proj at initializer_range, not
    initializer_range / sqrt(2 * n_layer)) is told apart from transformers', and only in those tensors."""
    config, architecture = MODELS["GPT2LMHeadModel"], "GPT2LMHeadModel"
    model = expand_transformers(config)
    unscaled = {
        name: dataclasses.replace(spec, params={"mean": 0.0, "std": 0.02}) if "c_proj.weight" in name else spec
        for name, spec in model.specs.items()
    }
    ours = {
        name: np.concatenate(
            [t.tensor().ravel() for seed in SEEDS for t in plan_model(ModelRequest(seed, unscaled)) if t.name == name]
        )
        for name in model.specs
    }
    theirs = pooled([fresh(config, architecture, seed).state_dict() for seed in SEEDS], model.specs)
    random = {name for name, spec in model.specs.items() if spec.scheme == "normal"}
    assert sorted(differing(ours, theirs, random)) == sorted(n for n in model.specs if "c_proj.weight" in n)


def test_dtype_and_config_round_trip(tmp_path):
    config = {**MODELS["LlamaForCausalLM"], "torch_dtype": "bfloat16", "rms_norm_eps": 1e-5}
    directory = write(tmp_path, config, 4)
    loaded, info = load(directory, "LlamaForCausalLM")
    assert not info["missing_keys"] and loaded.dtype == torch.bfloat16
    assert loaded.config.rms_norm_eps == 1e-5
    written = json.loads((directory / "config.json").read_text())
    assert written["dtype"] == "bfloat16" and "torch_dtype" not in written
