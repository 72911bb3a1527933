"""Caching for many clients asking the same thing: the in-process cache (bounded in bytes, LRU, thread-safe),
ETags and 304 on every content response, and the GET form whose seeded responses any HTTP cache may keep."""

from __future__ import annotations

import re
import threading
from urllib.parse import urlencode

import pytest
from fastapi.testclient import TestClient

from service.api.cache import ResponseCache
from service.app import create_app
from service.settings import Settings

BODY = {"shape": [256, 784], "scheme": "kaiming_normal", "seed": 7}
QUERY = "shape=256,784&scheme=kaiming_normal&seed=7"


def make_client(**settings) -> TestClient:
    return TestClient(create_app(Settings(**settings)), raise_server_exceptions=False)


# --- the cache itself ---


def test_eviction_is_by_bytes_least_recently_used_first():
    cache = ResponseCache(100)
    cache.put("a", b"a" * 40)
    cache.put("b", b"b" * 40)
    assert cache.get("a") == b"a" * 40  # "a" is now the most recently used
    cache.put("c", b"c" * 40)  # 120 bytes > 100: the least recently used ("b") goes
    assert cache.get("b") is None and cache.get("a") == b"a" * 40 and cache.get("c") == b"c" * 40
    assert cache.nbytes == 80 and len(cache) == 2
    cache.put("d", b"d" * 100)  # exactly the budget: everything else goes
    assert len(cache) == 1 and cache.nbytes == 100
    cache.put("e", b"e" * 101)  # larger than the whole budget: not kept, nothing evicted
    assert cache.get("e") is None and cache.get("d") == b"d" * 100
    cache.put("d", b"x" * 10)  # replacing an entry accounts for the old size
    assert cache.nbytes == 10


def test_zero_bytes_turns_it_off():
    cache = ResponseCache(0)
    cache.put("a", b"")
    cache.put("b", b"b")
    assert not cache.enabled and cache.get("b") is None and cache.nbytes == 0


def test_concurrent_use_keeps_the_accounting_exact():
    cache = ResponseCache(10_000)

    def work(worker: int) -> None:
        for i in range(500):
            key = f"{(worker * 7 + i) % 60}"
            cache.put(key, key.encode() * 30)
            body = cache.get(f"{i % 60}")
            assert body is None or body == f"{i % 60}".encode() * 30

    threads = [threading.Thread(target=work, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert cache.nbytes <= 10_000
    assert cache.nbytes == sum(len(cache.get(str(k)) or b"") for k in range(60))


# --- the cache in the service ---


def test_a_hit_returns_identical_bytes_and_headers():
    client = make_client(cache_bytes=1 << 24)
    for fmt in ("safetensors", "json", "npy"):
        first = client.post("/init", json={**BODY, "format": fmt})
        second = client.post("/init", json={**BODY, "format": fmt})
        assert (first.headers["x-initserve-cache"], second.headers["x-initserve-cache"]) == ("miss", "hit")
        assert first.content == second.content
        assert first.headers["etag"] == second.headers["etag"]
        assert first.headers["content-type"] == second.headers["content-type"]
    assert client.get(f"/init?{QUERY}").headers["x-initserve-cache"] == "hit"  # GET and POST share entries


def test_what_is_not_cached():
    client = make_client(cache_bytes=1 << 24, stream_threshold_bytes=1 << 16)
    unseeded = {"shape": [8, 8], "scheme": "uniform"}
    assert "x-initserve-cache" not in client.post("/init", json=unseeded).headers  # a drawn seed is a one-off
    assert "x-initserve-cache" not in client.post("/init", json=BODY).headers  # streamed: above the threshold
    assert client.app.state.response_cache.nbytes == 0
    off = make_client(cache_bytes=0)
    assert "x-initserve-cache" not in off.post("/init", json=BODY).headers


def test_cache_is_bounded_in_the_service():
    client = make_client(cache_bytes=2_000_000)  # room for two [256, 784] float32 responses, not three
    for seed in (1, 2, 3):
        client.post("/init", json={**BODY, "seed": seed})
    cache = client.app.state.response_cache
    assert len(cache) == 2 and cache.nbytes <= 2_000_000
    assert client.post("/init", json={**BODY, "seed": 1}).headers["x-initserve-cache"] == "miss"
    assert client.post("/init", json={**BODY, "seed": 3}).headers["x-initserve-cache"] == "hit"


def test_a_repeated_request_is_answered_from_its_remembered_headers_even_for_304():
    client = make_client(cache_bytes=1_000_000)  # one [256, 784] float32 response fits, not two
    first = client.post("/init", json=BODY)
    tag = first.headers["etag"]
    assert client.post("/init", json=BODY, headers={"if-none-match": tag}).status_code == 304
    same_request = {**BODY, "a": 0.0, "mode": "fan_in"}  # defaults spelled out: the same tensor, the same entry
    assert client.post("/init", json=same_request).headers["x-initserve-cache"] == "hit"
    client.post("/init", json={**BODY, "seed": 8})  # evicts the first body; its headers are still remembered
    again = client.post("/init", json=BODY)
    assert again.headers["x-initserve-cache"] == "miss" and again.content == first.content
    assert again.headers["etag"] == tag


# --- headers ---


def test_seeded_responses_are_immutable_and_unseeded_are_not_stored(client):
    immutable = "public, max-age=31536000, immutable"
    assert client.get(f"/init?{QUERY}").headers["cache-control"] == immutable
    assert client.post("/init", json=BODY).headers["cache-control"] == immutable
    unseeded = client.get("/init?shape=4,4&scheme=uniform")
    assert unseeded.headers["cache-control"] == "no-store" and unseeded.status_code == 200


def test_etag_and_304_on_every_content_response(client):
    for method, url, body in [
        ("GET", f"/init?{QUERY}", None),
        ("POST", "/init", BODY),
        ("POST", "/stats", {**BODY, "bins": 8}),
        ("GET", "/schemes", None),
        ("GET", "/gain?nonlinearity=relu", None),
    ]:
        first = client.request(method, url, json=body)
        assert first.status_code == 200 and first.headers["etag"].startswith('"'), url
        again = client.request(method, url, json=body, headers={"if-none-match": first.headers["etag"]})
        assert again.status_code == 304 and again.content == b"", url
        assert again.headers["etag"] == first.headers["etag"]
    stats = client.post("/stats", json={**BODY, "bins": 8}).headers["etag"]
    assert client.post("/stats", json={**BODY, "bins": 9}).headers["etag"] != stats


# --- the GET form ---


def test_get_equals_post(client):
    cases = [
        (QUERY, BODY),
        (
            "shape=64,3,3,3&scheme=kaiming_uniform&mode=fan_out&nonlinearity=relu&a=0&seed=1&dtype=float16&format=npy",
            {
                "shape": [64, 3, 3, 3],
                "scheme": "kaiming_uniform",
                "mode": "fan_out",
                "nonlinearity": "relu",
                "a": 0,
                "seed": 1,
                "dtype": "float16",
                "format": "npy",
            },
        ),
        (
            "shape=&scheme=glorot_uniform&seed=1&format=json",
            {"shape": [], "scheme": "glorot_uniform", "seed": 1, "format": "json"},
        ),
        (
            "shape=256&scheme=torch_default&fan_in=784&seed=3&name=fc1.bias&slice=10:20",
            {
                "shape": [256],
                "scheme": "torch_default",
                "fan_in": 784,
                "seed": 3,
                "name": "fc1.bias",
                "slice": [[10, 20]],
            },
        ),
        (
            "shape=16,16&scheme=sparse&sparsity=0.5&std=0.02&seed=2",
            {"shape": [16, 16], "scheme": "sparse", "sparsity": 0.5, "std": 0.02, "seed": 2},
        ),
    ]
    for query, body in cases:
        got, posted = client.get(f"/init?{query}"), client.post("/init", json=body)
        assert got.status_code == posted.status_code == 200, got.text
        assert got.content == posted.content and got.headers["etag"] == posted.headers["etag"]


@pytest.mark.parametrize(
    ("query", "body"),
    [
        ({"shape": "256,784", "scheme": "kaiming_normal", "seed": "x"}, {**BODY, "seed": "x"}),
        ({"shape": "256,784", "scheme": "nope", "seed": "1"}, {**BODY, "scheme": "nope"}),
        ({"shape": "256,784", "seed": "1"}, {"shape": [256, 784], "seed": 1}),
        ({"shape": "256,784", "scheme": "kaiming_normal", "gain": "2"}, {**BODY, "gain": 2}),
        ({"shape": "256,784", "scheme": "kaiming_normal", "mode": "fan_avg"}, {**BODY, "mode": "fan_avg"}),
        ({"shape": "256,784", "scheme": "kaiming_normal", "a": "abc"}, {**BODY, "a": "abc"}),
        ({"shape": "256,784", "scheme": "kaiming_normal", "a": "inf"}, {**BODY, "a": "inf"}),
        ({"shape": "256,x", "scheme": "kaiming_normal"}, {**BODY, "shape": [256, "x"]}),
        ({"shape": "256,0", "scheme": "kaiming_normal"}, {**BODY, "shape": [256, 0]}),
        ({"shape": "256,784", "scheme": "kaiming_normal", "dtype": "int8"}, {**BODY, "dtype": "int8"}),
        ({"shape": "256,784", "scheme": "kaiming_normal", "slice": "0:300,0:1"}, {**BODY, "slice": [[0, 300], [0, 1]]}),
        ({"shape": "256,784", "scheme": "kaiming_normal", "slice": "0:3"}, {**BODY, "slice": [[0, 3]]}),
        ({"shape": "256,784", "scheme": "kaiming_normal", "bogus": "1"}, {**BODY, "bogus": "1"}),
        (
            {"shape": "2,3", "scheme": "eye", "format": "npy", "dtype": "bfloat16"},
            {"shape": [2, 3], "scheme": "eye", "format": "npy", "dtype": "bfloat16"},
        ),
        (
            {"shape": "4096,4096", "scheme": "zeros", "format": "json"},
            {"shape": [4096, 4096], "scheme": "zeros", "format": "json"},
        ),
    ],
)
def test_get_errors_are_post_errors_located_in_the_query(client, query, body):
    got, posted = client.get(f"/init?{urlencode(query)}"), client.post("/init", json=body)
    assert got.status_code == posted.status_code and got.status_code in (413, 422), got.text
    got_detail, posted_detail = got.json()["detail"], posted.json()["detail"]
    assert [(d["msg"], d["type"]) for d in got_detail] == [(d["msg"], d["type"]) for d in posted_detail]
    assert [d["loc"] for d in got_detail] == [["query", *d["loc"][1:]] for d in posted_detail]


def test_a_parameter_given_twice_is_refused(client):
    r = client.get(f"/init?{QUERY}&seed=8")
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["query", "seed"]


def test_method_not_allowed_lists_both_methods_of_init(client):
    r = client.put("/init", json=BODY)
    assert r.status_code == 405 and r.headers["allow"] == "GET, POST"


# --- the raw-body fast path: the same bytes answered before routing ---


def _spy_on_validation(monkeypatch) -> list[int]:
    """Counts the requests that reach the /init route's own work (resolving a plan)."""
    from service.api import admission

    calls: list[int] = []
    original = admission.admit_single

    def counted(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(admission, "admit_single", counted)
    return calls


def test_identical_bytes_are_answered_before_routing_with_identical_responses(monkeypatch):
    client = make_client(cache_bytes=1 << 24)
    calls = _spy_on_validation(monkeypatch)
    served_before = _served(client)
    raw = b'{"shape":[256,784],"scheme":"kaiming_normal","seed":7}'
    first = client.post("/init", content=raw)
    second = client.post("/init", content=raw, headers={"content-type": "text/plain"})  # the label plays no part
    third = client.post("/init", content=raw)
    assert len(calls) == 1  # the second and third never reached the route
    assert first.headers["x-initserve-cache"] == "miss" and third.headers["x-initserve-cache"] == "hit"
    assert first.content == second.content == third.content
    for name in ("etag", "cache-control", "content-type", "content-disposition", "x-initserve-seed"):
        assert first.headers[name] == third.headers[name]
    assert client.post("/init", content=raw, headers={"if-none-match": first.headers["etag"]}).status_code == 304
    assert len(calls) == 1
    assert _served(client) == served_before + 3  # counted under the route, as a routed request would be


def _served(client: TestClient) -> float:
    text = client.get("/metrics").text
    found = re.search(r'initserve_requests_total\{method="POST",route="/init",status="200"\} (\S+)', text)
    return float(found.group(1)) if found else 0.0


def test_the_accept_header_is_part_of_the_key(monkeypatch):
    client = make_client(cache_bytes=1 << 24)
    raw = b'{"shape":[4,4],"scheme":"uniform","seed":1}'
    as_safetensors = client.post("/init", content=raw)
    as_json = client.post("/init", content=raw, headers={"accept": "application/json"})
    again = client.post("/init", content=raw, headers={"accept": "application/json"})
    assert as_safetensors.headers["content-type"] != as_json.headers["content-type"]
    assert as_json.content == again.content and again.headers["x-initserve-cache"] == "hit"
    assert len(again.json()["data"]) == 16


def test_unseeded_bad_and_evicted_requests_go_through_the_app(monkeypatch):
    client = make_client(cache_bytes=1 << 24)
    calls = _spy_on_validation(monkeypatch)
    unseeded = b'{"shape":[4,4],"scheme":"uniform"}'
    seeds = {client.post("/init", content=unseeded).headers["x-initserve-seed"] for _ in range(3)}
    assert len(seeds) == 3 and len(calls) == 3  # a drawn seed is never remembered
    bad = b'{"shape":[4,4],"scheme":"uniform","seed":1,"gain":2}'
    assert [client.post("/init", content=bad).status_code for _ in range(2)] == [422, 422]
    raw = b'{"shape":[4,4],"scheme":"uniform","seed":1}'
    first = client.post("/init", content=raw)
    client.app.state.response_cache.clear()
    after = client.post("/init", content=raw)  # evicted: the app answers, with the same bytes
    assert after.headers["x-initserve-cache"] == "miss" and after.content == first.content


def test_keys_are_still_required_for_a_cached_body():
    client = make_client(cache_bytes=1 << 24, api_keys="k1")
    raw = b'{"shape":[4,4],"scheme":"uniform","seed":1}'
    assert client.post("/init", content=raw, headers={"authorization": "Bearer k1"}).status_code == 200
    assert client.post("/init", content=raw).status_code == 401


# --- many tensors: the same cache ---


def test_many_tensor_responses_are_cached_and_answered_before_routing(monkeypatch):
    client = make_client(cache_bytes=1 << 24)
    from service.api import admission

    calls: list[int] = []
    original = admission.admit_many
    monkeypatch.setattr(admission, "admit_many", lambda *a: calls.append(1) or original(*a))
    raw = b'{"seed":3,"tensors":{"w":{"shape":[8,4],"scheme":"uniform"},"b":{"shape":[8],"scheme":"zeros"}}}'
    first = client.post("/init", content=raw)
    again = client.post(
        "/init",
        json={
            "seed": 3,
            "tensors": {"w": {"shape": [8, 4], "scheme": "uniform"}, "b": {"shape": [8], "scheme": "zeros"}},
        },
    )
    third = client.post("/init", content=raw)
    assert [r.headers["x-initserve-cache"] for r in (first, again, third)] == ["miss", "hit", "hit"]
    assert first.content == again.content == third.content
    assert len(calls) == 1  # resolved once: the second by its canonical form, the third by its raw bytes
    tag = first.headers["etag"]
    assert client.post("/init", content=raw, headers={"if-none-match": tag}).status_code == 304 and len(calls) == 1
