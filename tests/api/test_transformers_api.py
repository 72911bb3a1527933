"""POST /init with a transformers model: the checkpoint's tensors in one file, identified by the semantics id,
and the refusals in the one error shape."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient
from safetensors.numpy import load

from service.app import create_app
from service.engine.recipes import transformers as family
from service.settings import Settings
from tests.engine.test_transformers import LLAMA


def body(**model) -> dict:
    return {"seed": 7, "model": {"framework": "transformers", "config": LLAMA, **model}}


def metadata(content: bytes) -> dict:
    size = int.from_bytes(content[:8], "little")
    return json.loads(content[8 : 8 + size])["__metadata__"]


def test_a_model_in_one_file_with_its_identity(client):
    response = client.post("/init", json=body(config={**LLAMA, "tie_word_embeddings": True}))
    assert response.status_code == 200, response.text
    tensors = load(response.content)
    assert len(tensors) == 20 and "lm_head.weight" not in tensors
    meta = metadata(response.content)
    assert meta["framework"] == "transformers" and meta["semantics"] == family.SEMANTICS
    assert (meta["model_type"], meta["architecture"]) == ("llama", "LlamaForCausalLM")
    assert json.loads(meta["tied"]) == {"lm_head.weight": "model.embed_tokens.weight"}
    # The same tensor asked for alone: the same bits (keyed by seed and transformers' name).
    name = "model.layers.1.self_attn.o_proj.weight"
    alone = client.post("/init", json={"shape": [32, 32], "scheme": "normal", "std": 0.02, "seed": 7, "name": name})
    assert load(alone.content)[name].tobytes() == tensors[name].tobytes()


def test_the_semantics_version_is_part_of_the_etag(monkeypatch):
    """Another semantics id, the same tensors: another ETag (a cache never mixes two releases' checkpoints)."""
    client = TestClient(create_app(Settings(cache_bytes=0)))
    first = client.post("/init", json=body()).headers["etag"]
    assert client.post("/init", json=body()).headers["etag"] == first
    monkeypatch.setattr(family, "SEMANTICS", "transformers-9.9.9")
    second = client.post("/init", json=body())
    assert second.headers["etag"] != first and metadata(second.content)["semantics"] == "transformers-9.9.9"


@pytest.mark.parametrize(
    ("request_body", "status", "loc", "message"),
    [
        (body(config={**LLAMA, "model_type": "falcon"}), 422, "model.config.model_type", "unsupported model_type"),
        (body(architecture="LlamaForTokenClassification"), 422, "model.architecture", "not supported"),
        (body(config={**LLAMA, "quantization_config": {}}), 422, "model.config.quantization_config", "quantized"),
        (body(config={**LLAMA, "num_hidden_layers": 10**6}), 413, "model.config.num_hidden_layers", "layers"),
        (body(config={**LLAMA, "vocab_size": 10**9}), 413, "tensors['model.embed_tokens.weight'].shape", "limit"),
        ({**body(), "rng": "torch-2.13"}, 422, "rng", "keyed by request"),
        (body(dtype="int8"), 422, ["model", "dtype"], "float32"),
        (body(rules=[{"scheme": "normal", "std": -1}]), 422, ["model", "rules", 0, "std"], "greater than"),
        (body(config="llama"), 422, ["model", "config"], "dictionary"),
    ],
)
def test_refusals(client, request_body, status, loc, message):
    response = client.post("/init", json=request_body)
    assert response.status_code == status, response.text
    [error] = response.json()["detail"]
    assert error["loc"] == ["body", *([loc] if isinstance(loc, str) else loc)]
    assert message in error["msg"]
