"""Checkpoint files over HTTP and the Hub protocol under /hub (service/hub.py, service/api/routes/hub.py), in
process: byte ranges against the full file, the engine work each request does (counted), identity, refusals."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from service import hub
from service.app import create_app
from service.engine.plan import Plan
from service.settings import Settings

REPO = "initserve/tiny-llama-seed7"
FILE = f"/hub/{REPO}/resolve/main/model.safetensors"
GPT2 = {"model_type": "gpt2", "n_embd": 32, "n_layer": 2, "n_head": 4, "vocab_size": 100, "n_positions": 64}
SPEC_BODY = {
    "seed": 3,
    "model": {
        "framework": "transformers",
        "config": {**GPT2, "architectures": ["GPT2LMHeadModel"]},
        "dtype": "bfloat16",
    },
    "shard_size": "20KB",
}


@pytest.fixture
def generated(monkeypatch):
    """Elements the engine generates, counted at Plan.generate (every tensor of a checkpoint goes through it)."""
    counted = [0]
    original = Plan.generate

    def counting(self, start=0, stop=None):
        values = original(self, start, stop)
        counted[0] += values.size
        return values

    monkeypatch.setattr(Plan, "generate", counting)
    return counted


def full(client, path=FILE):
    response = client.get(path)
    assert response.status_code == 200, response.text
    return response.content


def test_ranges_are_the_full_files_bytes(client):
    """Every form of a single range, across the header, element boundaries (bf16: 2 bytes) and tensors."""
    spec = hub.encode_spec(SPEC_BODY)
    for path in (FILE, f"/hub/{spec}/initserve/custom/resolve/main/model-00002-of-00004.safetensors"):
        whole = full(client, path)
        header = 8 + int.from_bytes(whole[:8], "little")
        cases = {
            "bytes=0-7": (0, 8),
            f"bytes=5-{header + 2}": (5, header + 3),  # the header and part of the first element
            f"bytes={header + 1}-{header + 6}": (header + 1, header + 7),  # within elements, not on their bounds
            f"bytes={len(whole) - 100}-{len(whole) + 1000}": (len(whole) - 100, len(whole)),  # past the end: cut
            f"bytes={header + 3}-": (header + 3, len(whole)),
            "bytes=-5": (len(whole) - 5, len(whole)),
            f"bytes=-{len(whole) * 2}": (0, len(whole)),
        }
        for asked, (first, last) in cases.items():
            response = client.get(path, headers={"Range": asked})
            assert response.status_code == 206, (asked, response.text)
            assert response.headers["content-range"] == f"bytes {first}-{last - 1}/{len(whole)}"
            assert response.content == whole[first:last], asked
            assert int(response.headers["content-length"]) == last - first


def test_a_range_generates_only_the_elements_it_holds(client, generated):
    whole = full(client)
    header = 8 + int.from_bytes(whole[:8], "little")
    numel = (len(whole) - header) // 4
    assert generated[0] == numel  # the whole file: every element once
    generated[0] = 0
    assert client.head(FILE).headers["content-length"] == str(len(whole))
    assert client.get(FILE, headers={"Range": f"bytes=0-{header - 1}"}).content == whole[:header]
    for path in (f"/hub/api/models/{REPO}/revision/main", f"/hub/api/models/{REPO}/tree/main"):
        assert client.get(path).status_code == 200
    assert generated[0] == 0  # HEAD, the header, model_info and the tree generate nothing
    assert client.get(FILE, headers={"Range": f"bytes={header + 6}-{header + 13}"}).status_code == 206
    assert generated[0] == 3  # bytes 6..13 of float32 data: elements 1, 2 and 3
    generated[0] = 0
    assert client.get(FILE, headers={"Range": "bytes=-4000"}).content == whole[-4000:]
    assert generated[0] == 1000


def test_etag_commit_and_conditional_requests(client):
    head = client.head(FILE).headers
    commit = head["x-repo-commit"]
    assert len(commit) == 40 and int(commit, 16) >= 0
    assert head["etag"].startswith('"') and len(head["etag"]) == 42 and head["accept-ranges"] == "bytes"
    assert head["cache-control"] == "no-cache"
    assert client.get(FILE, headers={"If-None-Match": head["etag"]}).status_code == 304
    pinned = client.head(f"/hub/{REPO}/resolve/{commit}/model.safetensors").headers
    assert pinned["etag"] == head["etag"] and pinned["cache-control"].endswith("immutable")
    # If-Range of another version: the whole file, not a part of this one spliced onto the client's
    stale = client.get(FILE, headers={"Range": "bytes=0-9", "If-Range": '"0000"'})
    assert stale.status_code == 200 and stale.content == full(client)
    assert client.get(FILE, headers={"Range": "bytes=0-9", "If-Range": head["etag"]}).status_code == 206
    config = client.get(f"/hub/{REPO}/resolve/main/config.json")
    assert json.loads(config.content)["architectures"] == ["LlamaForCausalLM"]
    assert config.headers["etag"] == f'"{hub.resolve(None, REPO, 4096).files["config.json"].digest()}"'


def test_identity_is_the_repo_id_alone():
    """Every part of the identity changes the commit and the weights' digests; the same id gives the same commit
    in any process (nothing is stored: a fresh resolution, as another replica would make, agrees)."""
    commits = {}
    for repo_id in (
        REPO,
        "initserve/tiny-llama-seed8",
        "initserve/tiny-llama-seed7-bfloat16",
        "initserve/tiny-qwen2-seed7",
    ):
        commits[repo_id] = hub.resolve(None, repo_id, 4096).commit
    assert len(set(commits.values())) == 4
    assert hub.resolve(None, "initserve/tiny-llama-seed7-philox-v2", 4096).commit == commits[REPO]  # the default
    assert hub.resolve(None, "initserve/tiny-llama-seed7-philox-v1", 4096).commit != commits[REPO]
    hub.PLANS.clear()
    assert hub.resolve(None, REPO, 4096).commit == commits[REPO]
    # The catalogue's id and a spec carrying the same request are the same checkpoint.
    body = {
        "seed": 7,
        "rng": "philox-v2",
        "model": {"framework": "transformers", "config": hub.catalogue()["tiny-llama"]},
    }
    assert hub.resolve(hub.encode_spec(body), "initserve/custom", 4096).commit == commits[REPO]
    other = hub.encode_spec({**body, "model": {**body["model"], "rules": [{"layer": "*", "scheme": "zeros"}]}})
    assert hub.resolve(other, "initserve/custom", 4096).commit != commits[REPO]


def test_hub_refusals_have_the_codes_huggingface_hub_reads(client):
    spec = hub.encode_spec(SPEC_BODY)
    cases = [
        ("/hub/initserve/nope-seed1/resolve/main/config.json", 404, "RepoNotFound", "repo_id"),
        ("/hub/initserve/tiny-llama-seed01/resolve/main/config.json", 404, "RepoNotFound", "repo_id"),
        ("/hub/someone/tiny-llama-seed1/resolve/main/config.json", 404, "RepoNotFound", "repo_id"),
        ("/hub/api/models/initserve/custom/revision/main", 404, "RepoNotFound", "repo_id"),
        (f"/hub/{spec}/initserve/tiny-llama-seed7/resolve/main/config.json", 404, "RepoNotFound", "repo_id"),
        (f"/hub/{REPO}/resolve/v1.0/config.json", 404, "RevisionNotFound", "revision"),
        (f"/hub/api/models/{REPO}/revision/dev", 404, "RevisionNotFound", "revision"),
        (f"/hub/api/models/{REPO}/tree/dev", 404, "RevisionNotFound", "revision"),
        (f"/hub/{REPO}/resolve/main/generation_config.json", 404, "EntryNotFound", "filename"),
        ("/hub/not-base64!/initserve/custom/resolve/main/config.json", 422, None, "spec"),
        (f"/hub/{hub.encode_spec({'seed': 1})}/initserve/custom/resolve/main/config.json", 422, None, "spec.model"),
    ]
    unsupported = {**SPEC_BODY, "model": {"framework": "transformers", "config": {"model_type": "falcon"}}}
    cases.append(
        (
            f"/hub/{hub.encode_spec(unsupported)}/initserve/custom/resolve/main/config.json",
            422,
            None,
            "spec.model.config.model_type",
        )
    )
    seedless = {k: v for k, v in SPEC_BODY.items() if k != "seed"}
    cases.append(
        (f"/hub/{hub.encode_spec(seedless)}/initserve/custom/resolve/main/config.json", 422, None, "spec.seed")
    )
    for path, status, code, field in cases:
        response = client.get(path)
        assert response.status_code == status, (path, response.text)
        assert response.headers.get("x-error-code") == code, path
        (item,) = response.json()["detail"]
        assert item["loc"] == ["path", field], (path, item)
        assert response.headers["x-error-message"] == item["msg"].encode("latin-1", "replace").decode("latin-1")
    missing = client.head(f"/hub/{REPO}/resolve/main/generation_config.json")
    assert missing.status_code == 404 and missing.headers["x-repo-commit"] == hub.resolve(None, REPO, 4096).commit


@pytest.mark.parametrize(
    ("asked", "why"),
    [
        ("bytes=0-1,4-5", "one range"),
        ("bytes=900000000-", "has"),
        ("bytes=-0", "suffix"),
        ("bytes=9-3", "before"),
        ("bytes=x-3", "not bytes"),
        ("items=0-3", "not bytes"),
    ],
)
def test_unservable_ranges_are_416(client, generated, asked, why):
    response = client.get(FILE, headers={"Range": asked})
    assert response.status_code == 416 and why in response.json()["detail"][0]["msg"]
    assert response.headers["content-range"].startswith("bytes */")
    assert generated[0] == 0


def test_files_are_admitted_per_file_and_stream_under_the_budget(generated):
    """A 7B model's shard (llama-2-7b, float16: 2 shards of up to 5 GB) is announced and served in part without
    generating the rest; a file above INITSERVE_MAX_FILE_BYTES is refused; a budget that cannot hold one chunk's
    working set refuses before the response starts."""
    seven_b = "/hub/initserve/llama-2-7b-seed0/resolve/main"
    with TestClient(create_app(Settings(max_file_bytes=5 << 30)), raise_server_exceptions=False) as client:
        index = client.get(f"{seven_b}/model.safetensors.index.json").json()
        assert index["metadata"]["total_parameters"] == 6_738_415_616  # Llama-2-7B's published count
        sizes = {}
        for shard in sorted(set(index["weight_map"].values())):
            head = client.head(f"{seven_b}/{shard}")
            sizes[shard] = int(head.headers["content-length"])
        assert len(sizes) == 3 and sum(sizes.values()) > index["metadata"]["total_size"]
        part = client.get(f"{seven_b}/model-00002-of-00003.safetensors", headers={"Range": "bytes=-1000000"})
        assert part.status_code == 206 and len(part.content) == 1_000_000
        assert generated[0] == 500_000
    with TestClient(create_app(Settings(max_file_bytes=1 << 19)), raise_server_exceptions=False) as client:
        for refused in (client.get(FILE), client.head(FILE)):
            assert refused.status_code == 413 and refused.headers["x-error-message"].endswith("shard_size in the spec")
        assert client.get(FILE.replace("model.safetensors", "config.json")).status_code == 200
    with TestClient(create_app(Settings(memory_budget_bytes=1 << 20)), raise_server_exceptions=False) as client:
        response = client.get(FILE)
        assert response.status_code == 413 and "memory budget" in response.json()["detail"][0]["msg"]


def test_new_repositories_are_planned_one_at_a_time_and_once(monkeypatch):
    """Planning a repository is Python work that holds the GIL (~50 ms for a 7B model): concurrent requests for
    new ones plan one after another in the heavy lane, and a repository planned lately is not planned again
    (counted at hub._plan)."""
    import asyncio
    import threading
    import time

    import httpx

    active, most, calls = [0], [0], []
    lock = threading.Lock()
    original = hub._plan

    def plan(spec, repo_id, max_tensors):
        with lock:
            active[0] += 1
            most[0] = max(most[0], active[0])
            calls.append(repo_id)
        time.sleep(0.05)  # long enough for concurrent plans to overlap, were they allowed to
        try:
            return original(spec, repo_id, max_tensors)
        finally:
            with lock:
                active[0] -= 1

    monkeypatch.setattr(hub, "_plan", plan)
    hub.PLANS.clear()
    app = create_app(Settings())
    repos = [f"initserve/tiny-gpt2-seed{n}" for n in range(4)] + ["initserve/tiny-gpt2-seed0"] * 4

    async def fetch_all():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
            return await asyncio.gather(*(client.get(f"/hub/{r}/resolve/main/config.json") for r in repos))

    responses = asyncio.run(fetch_all())
    assert [r.status_code for r in responses] == [200] * len(repos)
    assert most[0] == 1
    assert sorted(calls) == sorted(set(repos))
