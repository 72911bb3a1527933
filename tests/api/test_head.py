"""HEAD on the GET form, for HTTP caches and CDNs: the GET's status and headers, nothing generated; and the
README's conditional request (ETag from HEAD, then If-None-Match) really answers 304. Through the real server."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest

from tests.server import serve

QUERY = "/init?shape=256,784&scheme=kaiming_normal&seed=7"


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    with serve() as (base, _):
        yield base


def _generated_elements(client: httpx.Client) -> float:
    text = client.get("/metrics").text
    return sum(float(v) for v in re.findall(r"^initserve_generated_elements_total\{[^}]*\} (\S+)$", text, re.M))


def test_head_answers_the_gets_headers_without_generating(url: str) -> None:
    with httpx.Client(base_url=url, timeout=30) as client:
        before = _generated_elements(client)
        for query in (QUERY, QUERY + "&format=npy", QUERY + "&format=json", "/init?shape=64,64&scheme=he_normal"):
            head = client.head(query)
            assert head.status_code == 200, head.text
            assert head.content == b""
        assert _generated_elements(client) == before  # four HEADs, nothing generated
        head = client.head(QUERY)
        get = client.get(QUERY)
        assert get.status_code == 200
        for name in ("etag", "content-length", "cache-control", "content-type", "x-initserve-seed"):
            assert head.headers[name] == get.headers[name], name
        assert int(head.headers["content-length"]) == len(get.content)
        assert _generated_elements(client) == before + 256 * 784  # the GET generated it, once


def test_head_etag_then_conditional_get_is_304(url: str) -> None:
    with httpx.Client(base_url=url, timeout=30) as client:
        tag = client.head(QUERY + "&format=npy").headers["etag"]
        again = client.get(QUERY + "&format=npy", headers={"If-None-Match": tag})
        assert again.status_code == 304
        assert again.content == b""
        assert client.head(QUERY + "&format=npy", headers={"If-None-Match": tag}).status_code == 304


def test_head_refuses_what_get_refuses(url: str) -> None:
    with httpx.Client(base_url=url, timeout=30) as client:
        assert client.head("/init?shape=256,784&scheme=nope&seed=7").status_code == 422
        assert client.head("/init?shape=2,3&scheme=he_normal&dtype=bfloat16&format=npy").status_code == 422
        assert client.head("/init?shape=2,3&scheme=he_normal", headers={"Accept": "image/png"}).status_code == 406


@pytest.mark.parametrize(
    "path",
    [
        "/schemes",
        "/schemes?family=torch",
        "/gain?nonlinearity=tanh",
        "/healthz",
        "/openapi.json",
        "/docs",
        "/metrics",
    ],
)
def test_every_get_resource_answers_head_with_its_headers_and_no_body(url: str, path: str) -> None:
    with httpx.Client(base_url=url, timeout=30) as client:
        get = client.get(path)
        head = client.head(path)
    assert get.status_code == head.status_code == 200, (get.text, head.text)
    assert head.content == b""
    for name in ("content-type", "etag"):
        assert head.headers.get(name) == get.headers.get(name), name
    if path != "/metrics":  # its counters move between the two requests, and so does its length
        assert head.headers["content-length"] == get.headers["content-length"]
    else:
        assert int(head.headers["content-length"]) > 0


def test_head_of_an_unknown_path_is_the_gets_404(url: str) -> None:
    with httpx.Client(base_url=url, timeout=30) as client:
        head = client.head("/nope")
    assert head.status_code == 404 and head.content == b""
