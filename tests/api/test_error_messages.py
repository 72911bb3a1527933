"""Errors that say how to fix the request: where malformed JSON breaks and what was expected there, the scheme
a misspelt one was likely meant to be, the nonlinearities /gain accepts, and the path without a trailing slash.
All in the one error shape."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from service.engine.schemes.gain import NONLINEARITIES

GOOD = '{"shape":[256,784],"scheme":"kaiming_normal","seed":7}'


def only(r) -> dict:
    body = r.json()
    assert list(body) == ["detail"] and len(body["detail"]) == 1, body
    return body["detail"][0]


@pytest.mark.parametrize(
    ("raw", "pos", "where", "expected"),
    [
        (GOOD[:-1], 53, "line 1, column 54", "Expecting ',' delimiter (the body ends there: cut short?)"),
        ('{"shape":[4],\n "scheme" "normal"}', 24, "line 2, column 11", "Expecting ':' delimiter"),
        ('{"shape":[4],\n  "scheme":"normal",}', 34, "line 2, column 21", "Expecting property name"),
        ('{"shape":[4,4],"scheme":"normal","seed":1', 41, "line 1, column 42", "the body ends there"),
    ],
)
def test_malformed_json_gives_line_column_and_what_was_expected(client: TestClient, raw, pos, where, expected):
    r = client.post("/init", content=raw)
    assert r.status_code == 422
    d = only(r)
    assert d["loc"] == ["body", pos]
    assert d["type"] == "json_invalid"
    assert d["msg"].startswith(f"invalid JSON at {where}: "), d["msg"]
    assert expected in d["msg"]


def test_unknown_scheme_suggests_the_closest(client: TestClient) -> None:
    d = only(client.post("/init", json={"shape": [4, 4], "scheme": "kaiming_norml", "seed": 1}))
    assert d["loc"] == ["body", "scheme"]
    assert d["msg"].startswith("unknown scheme 'kaiming_norml'; did you mean 'kaiming_normal'? known schemes: ")
    d = only(client.get("/init", params={"shape": "4,4", "scheme": "xavier_unifrom"}))
    assert d["loc"] == ["query", "scheme"] and "did you mean 'xavier_uniform'?" in d["msg"]
    d = only(client.post("/init", json={"shape": [4, 4], "scheme": "qqqqqqqq", "seed": 1}))
    assert "did you mean" not in d["msg"] and "known schemes: " in d["msg"]


def test_unsupported_nonlinearity_keeps_torchs_words_and_lists_the_accepted(client: TestClient) -> None:
    accepted = f"; accepted: {', '.join(NONLINEARITIES)}"
    r = client.get("/gain", params={"nonlinearity": "gelu"})
    assert r.status_code == 422
    assert only(r) == {
        "loc": ["query", "nonlinearity"],
        "msg": "Unsupported nonlinearity gelu" + accepted,
        "type": "value_error",
    }
    d = only(client.post("/init", json={"shape": [4, 4], "scheme": "kaiming_normal", "nonlinearity": "gelu"}))
    assert d["loc"] == ["body", "nonlinearity"] and d["msg"] == "Unsupported nonlinearity gelu" + accepted


@pytest.mark.parametrize(("method", "path"), [("POST", "/init/"), ("GET", "/init/"), ("GET", "/schemes/")])
def test_a_trailing_slash_is_refused_naming_the_path(client: TestClient, method: str, path: str) -> None:
    r = client.request(method, path, content=GOOD, follow_redirects=False)
    assert r.status_code == 404
    d = only(r)
    assert d["loc"] == ["request"] and d["type"] == "not_found"
    assert f"did you mean {path.rstrip('/')!r}" in d["msg"]


def test_an_unknown_path_is_still_a_plain_404(client: TestClient) -> None:
    d = only(client.get("/nowhere/", follow_redirects=False))
    assert d["msg"] == "Not Found"
