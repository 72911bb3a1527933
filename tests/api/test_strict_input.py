"""Input that used to be misread (a tensor silently dropped, a name silently changed, a number read from another
script) or crashed the server (500) is refused with a 4xx naming the field and the rule; names that a format's
own reader would not give back are refused for that format."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
import subprocess
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from safetensors import safe_open

from service.api import errors
from service.app import create_app
from service.engine.errors import InitError
from service.settings import Settings
from tests.server import CONSOLE_SCRIPT, serve

ONE = {"shape": [2], "scheme": "normal", "seed": 1, "format": "json"}


def detail(r) -> dict:
    assert r.headers["content-type"] == "application/json", r.text
    body = r.json()
    assert len(body["detail"]) >= 1, body
    return body["detail"][0]


def many(names: list[str], fmt: str) -> dict:
    return {
        "seed": 1,
        "format": fmt,
        "tensors": {n: {"shape": [i + 1], "scheme": "normal"} for i, n in enumerate(names)},
    }


# ---- 10. tensor names a format's reader would not give back ----


@pytest.mark.parametrize(
    ("names", "refused", "rule"),
    [
        (["a", "a\u0000b"], "a\\x00b", "NUL"),
        (["a", "a.npy"], "a.npy", "member of tensor 'a'"),
        (["x/../y"], "x/../y", "'..' segment"),
        (["/etc/x"], "/etc/x", "absolute path"),
        (["a\\b"], "a\\\\b", "backslash"),
    ],
)
def test_npz_refuses_names_numpy_load_would_not_give_back(client, names, refused, rule):
    r = client.post("/init", json=many(names, "npz"))
    assert r.status_code == 422, r.text
    d = detail(r)
    assert d["loc"] == ["body", "format"]
    assert refused in d["msg"] and rule in d["msg"] and "npz" in d["msg"]


NAMES_THAT_ROUND_TRIP = ["a", "b.npy", "x/y", "..x", "é 😀", "\u2028", " ", "__metadata__x", "a" * 256]


def test_npz_names_round_trip_through_numpy_load(client):
    r = client.post("/init", json=many(NAMES_THAT_ROUND_TRIP, "npz"))
    assert r.status_code == 200, r.text
    archive = np.load(io.BytesIO(r.content))
    assert sorted(archive.files) == sorted(NAMES_THAT_ROUND_TRIP)
    for index, name in enumerate(NAMES_THAT_ROUND_TRIP):
        assert archive[name].shape == (index + 1,), name


def test_safetensors_and_json_keep_every_name_npz_refuses(client, tmp_path: Path):
    names = ["a", "a\u0000b", "a.npy", "x/../y", "/etc/x", "a\\b", *NAMES_THAT_ROUND_TRIP[1:]]
    r = client.post("/init", json=many(names, "safetensors"))
    assert r.status_code == 200, r.text
    (tmp_path / "m.safetensors").write_bytes(r.content)
    with safe_open(tmp_path / "m.safetensors", "numpy") as f:
        assert sorted(f.keys()) == sorted(names)
        for index, name in enumerate(names):
            assert f.get_tensor(name).shape == (index + 1,), name
    r = client.post("/init", json=many(names, "json"))
    assert r.status_code == 200, r.text
    tensors = json.loads(r.content)["tensors"]
    assert sorted(tensors) == sorted(names)
    assert [len(tensors[n]["data"]) for n in names] == list(range(1, len(names) + 1))


# ---- 11. duplicate keys, text that is not Unicode, digits of other scripts ----


def test_a_repeated_key_in_tensors_is_refused_not_dropped(client):
    body = (
        b'{"seed":1,"format":"json","tensors":{"a":{"shape":[2],"scheme":"ones"},"a":{"shape":[3],"scheme":"zeros"}}}'
    )
    r = client.post("/init", content=body)
    assert r.status_code == 422, r.text
    d = detail(r)
    assert d["loc"] == ["body", "tensors"] and d["type"] == "duplicate_key"
    assert "'a'" in d["msg"] and "unique" in d["msg"]


def test_a_repeated_field_is_refused_where_it_is(client):
    r = client.post("/init", content=b'{"shape":[2],"scheme":"normal","seed":1,"seed":2}')
    assert r.status_code == 422 and detail(r)["loc"] == ["body"] and "'seed'" in detail(r)["msg"]
    body = b'{"seed":1,"model":{"layers":[{"type":"linear","args":[1,1],"name":"x","name":"y"}]}}'
    r = client.post("/init", content=body)
    assert r.status_code == 422 and detail(r)["loc"] == ["body", "model", "layers", 0], r.text


def test_get_name_that_is_not_utf8_is_refused_not_replaced(client):
    r = client.get("/init?shape=2&scheme=normal&seed=1&format=json&name=%ff")
    assert r.status_code == 422, r.text
    d = detail(r)
    assert d["loc"] == ["query", "name"] and d["type"] == "unicode_invalid" and "UTF-8" in d["msg"]
    r = client.get("/init?shape=2&scheme=normal&seed=1&format=json&n%ffme=x")
    assert r.status_code == 422 and detail(r)["type"] == "unicode_invalid"


def test_get_utf8_name_keys_the_same_stream_as_post(client):
    got = client.get("/init?shape=3&scheme=normal&seed=1&format=json&name=%C3%A9%20%F0%9F%98%80")
    posted = client.post("/init", json={**ONE, "shape": [3], "name": "é 😀"})
    assert got.status_code == posted.status_code == 200
    assert got.json()["data"] == posted.json()["data"]
    assert (
        got.json()["data"] != client.post("/init", json={**ONE, "shape": [3], "name": "\ufffd \ufffd"}).json()["data"]
    )


@pytest.mark.parametrize(
    ("query", "loc", "kind"),
    [
        ("shape=2&seed=%D9%A7", ["query", "seed"], "int_parsing"),  # ARABIC-INDIC DIGIT SEVEN
        ("shape=%D9%A2&seed=1", ["query", "shape", 0], "int_parsing"),
        ("shape=2,4&seed=1&slice=0:1,0:%EF%BC%92", ["query", "slice", 1, 1], "int_parsing"),  # FULLWIDTH TWO
        ("shape=2&seed=1&std=%D9%A1.5", ["query", "std"], "float_parsing"),
        ("shape=2,2&seed=1&fan_in=%E0%A5%AB", ["query", "fan_in"], "int_parsing"),  # DEVANAGARI FIVE
    ],
)
def test_get_numbers_are_ascii_digits_only(client, query, loc, kind):
    r = client.get(f"/init?scheme=normal&format=json&{query}")
    assert r.status_code == 422, r.text
    d = detail(r)
    assert (d["loc"], d["type"]) == (loc, kind)
    assert "ASCII digits" in d["msg"]


def test_gain_param_is_ascii_digits_only(client):
    assert client.get("/gain?nonlinearity=leaky_relu&param=0.5").json()["gain"] == pytest.approx((2 / 1.25) ** 0.5)
    r = client.get("/gain?nonlinearity=leaky_relu&param=%D9%A1")
    assert r.status_code == 422 and detail(r)["loc"] == ["query", "param"], r.text


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        (b'{"shape":[2],"scheme":"normal","seed":1,"name":"\xff"}', ["body"]),  # not UTF-8
        (b'{"shape":[2],"scheme":"normal","seed":1,"name":"\xed\xa0\x80"}', ["body"]),  # an encoded surrogate
        (b'{"shape":[2],"scheme":"normal","seed":1,"name":"a\\ud800"}', ["body", "name"]),  # an escaped one
        (b'{"seed":1,"tensors":{"\\udc00":{"shape":[2],"scheme":"ones"}}}', ["body", "tensors", "\udc00"]),
    ],
)
def test_post_text_that_is_not_unicode_is_refused(client, body, loc):
    r = client.post("/init", content=body)
    assert r.status_code == 422, r.text
    d = detail(r)
    assert d["loc"] == loc and d["type"] == "unicode_invalid"


@pytest.mark.parametrize("depth", [900, 990, 5000])
def test_deeply_nested_bodies_are_a_422_with_or_without_a_repeated_key(client, depth):
    nested = "[" * depth + "]" * depth
    for body in (
        f'{{"shape":[2],"scheme":"normal","x":{nested}}}',
        f'{{"shape":[2],"scheme":"normal","x":{nested},"x":1}}',
    ):
        r = client.post("/init", content=body.encode())
        assert r.status_code == 422 and detail(r)["loc"][0] == "body", r.text


def test_post_surrogate_pairs_and_utf16_bodies_still_read(client):
    escaped = client.post(
        "/init", content=b'{"shape":[2],"scheme":"normal","seed":1,"format":"json","name":"\\ud83d\\ude00"}'
    )
    assert escaped.status_code == 200 and escaped.json()["name"] == "😀"
    text = json.dumps({**ONE, "name": "😀"}, ensure_ascii=False)
    for encoding in ("utf-8", "utf-16-le", "utf-8-sig"):
        r = client.post("/init", content=text.encode(encoding))
        assert r.status_code == 200 and r.json()["data"] == escaped.json()["data"], encoding


# ---- 12. what used to be a 500 ----


def test_fans_beyond_64_bits_are_a_422(client):
    big = 1 << 64
    for field in ("fan_in", "fan_out"):
        body = {"shape": [2, 2], "scheme": "xavier_normal", "seed": 1, "format": "json", field: big}
        r = client.post("/init", json=body)
        assert r.status_code == 422 and detail(r)["loc"] == ["body", field], r.text
        assert client.post("/init", json={**body, field: big - 1}).status_code == 200
    spec = {"shape": [2, 2], "scheme": "xavier_normal", "fan_in": big}
    r = client.post("/init", json={"seed": 1, "tensors": {"w": spec}})
    assert r.status_code == 422 and detail(r)["loc"] == ["body", "tensors", "w", "fan_in"], r.text
    r = client.get(f"/init?shape=2,2&scheme=xavier_normal&seed=1&fan_out={big}")
    assert r.status_code == 422 and detail(r)["loc"] == ["query", "fan_out"], r.text


@pytest.mark.parametrize(
    ("query", "loc"),
    [
        ("shape=2&seed=" + "1" * 5000, ["query", "seed"]),
        ("shape=2," + "9" * 4301 + "&seed=1", ["query", "shape", 1]),
        ("shape=4&seed=1&slice=0:" + "1" * 101, ["query", "slice", 0, 1]),
    ],
)
def test_get_integers_of_thousands_of_digits_are_a_422(client, query, loc):
    r = client.get(f"/init?scheme=normal&format=json&{query}")
    assert r.status_code == 422, r.text
    d = detail(r)
    assert d["loc"] == loc and d["type"] == "int_too_long" and "at most 100 digits" in d["msg"]
    padded = client.get("/init?scheme=normal&format=json&shape=2&seed=" + "0" * 99 + "7")
    assert padded.status_code == 200 and padded.json()["seed"] == 7


def test_a_lone_surrogate_as_a_layer_keyword_is_a_422(client):
    body = b'{"seed":1,"model":{"layers":[{"type":"linear","args":[1,1],"\\ud800":1}]}}'
    r = client.post("/init", content=body)
    assert r.status_code == 422, r.text
    assert detail(r)["loc"] == ["body", "model", "layers", 0, "\ud800"]


def test_error_bodies_render_whatever_text_they_quote():
    # Defence in depth: were a lone surrogate to reach a message, the 422 must still render (as its JSON escape).
    error = InitError("model.layers[0]", "no argument '\ud800'")
    response = asyncio.run(errors._init_error(None, error))  # type: ignore[arg-type]
    assert response.status_code == 422
    assert json.loads(response.body)["detail"][0]["msg"] == "no argument '\ud800'"


def test_an_unhandled_exception_is_a_json_500_with_the_request_id(caplog):
    app = create_app(Settings())

    @app.get("/_boom")
    def boom() -> None:
        raise RuntimeError("a bug")

    client = TestClient(app, raise_server_exceptions=False)
    with caplog.at_level(logging.ERROR):
        r = client.get("/_boom", headers={"X-Request-ID": "req-42"})
    assert r.status_code == 500
    assert r.headers["content-type"] == "application/json"
    assert r.headers["x-request-id"] == "req-42"
    d = detail(r)
    assert d["loc"] == ["server"] and d["type"] == "internal_error" and "req-42" in d["msg"]
    assert "a bug" not in r.text  # the details stay in the log
    logged = [rec for rec in caplog.records if getattr(rec, "request_id", None) == "req-42" and rec.exc_info]
    assert logged and "RuntimeError: a bug" in logging.Formatter().formatException(logged[0].exc_info)


# ---- 13. conditional requests, 406, keys ----


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/init", {"shape": [2], "scheme": "normal"}),
        ("/init", {"tensors": {"w": {"shape": [2], "scheme": "normal"}}}),
        ("/stats", {"shape": [16], "scheme": "normal"}),
    ],
)
def test_if_none_match_star_on_a_drawn_seed_is_a_fresh_200(client, path, body):
    r = client.post(path, json=body, headers={"If-None-Match": "*"})
    assert r.status_code == 200 and r.content
    seeded = client.post(path, json={**body, "seed": 3}, headers={"If-None-Match": "*"})
    assert seeded.status_code == 304  # a seeded response never changes: the client may keep any it has


def test_not_acceptable_lists_the_formats_of_the_request(client):
    r = client.post("/init", json={"tensors": {"w": {"shape": [2], "scheme": "ones"}}}, headers={"Accept": "text/csv"})
    assert r.status_code == 406
    msg = detail(r)["msg"]
    assert "application/zip (npz)" in msg and "npy)" not in msg
    r = client.post("/init", json={"shape": [2], "scheme": "ones"}, headers={"Accept": "text/csv"})
    assert r.status_code == 406 and "application/x-npy (npy)" in detail(r)["msg"] and "npz" not in detail(r)["msg"]


@pytest.mark.parametrize("keys", [" , ", ",", " ", ",,  ,"])
def test_api_keys_without_a_key_refuse_to_start(keys):
    with pytest.raises(ValueError, match="holds no key"):
        Settings(_env_file=None, api_keys=keys)
    done = subprocess.run(
        [str(CONSOLE_SCRIPT), "serve", "--port", "1"],
        env={"INITSERVE_API_KEYS": keys, "PATH": ""},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "api_keys" in done.stderr and "holds no key" in done.stderr


def test_empty_api_keys_still_mean_no_authentication():
    assert Settings(_env_file=None, api_keys="").api_keys == []
    assert Settings(_env_file=None, api_keys=" a , b ,").api_keys == ["a", "b"]


def test_openapi_states_the_rules_it_can_and_describes_the_others(client):
    schema = client.get("/openapi.json").json()
    get = {p["name"]: p["schema"] for p in schema["paths"]["/init"]["get"]["parameters"]}
    for name in ("dtype", "layout", "format", "rng", "scheme"):
        assert "" not in get[name]["enum"] and len(get[name]["enum"]) >= 1, name
    assert get["seed"] == {"type": "integer", "minimum": 0, "maximum": 2**64 - 1}
    assert get["fan_in"]["maximum"] == get["fan_out"]["maximum"] == 2**64 - 1
    assert get["name"]["minLength"] == 1 and get["name"]["not"] == {"const": "__metadata__"}
    for name, good, bad in [
        ("shape", ["", "256,784", "1,2,3,4,5,6,7,8"], ["0", "1,", "1,2,3,4,5,6,7,8,9", "٢"]),
        ("slice", ["", "0:128,0:784"], ["0:", "1:2:3", "0:1,"]),
    ]:
        pattern = re.compile(get[name]["pattern"])
        assert all(pattern.search(text) for text in good) and not any(pattern.search(text) for text in bad), name
    gain = {p["name"]: p["schema"] for p in schema["paths"]["/gain"]["get"]["parameters"]}
    assert "leaky_relu" in gain["nonlinearity"]["enum"] and gain["param"]["pattern"]
    kaiming = schema["components"]["schemas"]["KaimingNormalInit"]["properties"]
    assert kaiming["mode"]["enum"] == ["fan_in", "fan_out"]
    layer = schema["components"]["schemas"]["Recipe"]["properties"]["layers"]["items"]["anyOf"][1]
    assert layer["required"] == ["type"] and "conv2d" in layer["properties"]["type"]["enum"]
    for path, method in (("/init", "post"), ("/init", "get"), ("/stats", "post")):
        description = schema["paths"][path][method]["description"]
        assert "`dirac` 3-D to 5-D" in description and "INITSERVE_MAX_ELEMENTS" in description, (path, method)


def test_former_server_errors_through_the_real_server():
    big = 1 << 64
    with serve() as (url, _):
        cases = [
            ("GET", f"/init?shape=2,2&scheme=xavier_normal&seed=1&fan_in={big}", None, ["query", "fan_in"]),
            ("GET", "/init?shape=2&scheme=normal&seed=" + "1" * 5000, None, ["query", "seed"]),
            ("GET", "/init?shape=2&scheme=normal&seed=1&name=%ff", None, ["query", "name"]),
            ("GET", "/init?shape=2&scheme=normal&seed=%D9%A7", None, ["query", "seed"]),
            ("POST", "/init", b'{"seed":1,"model":{"layers":[{"type":"linear","args":[1,1],"\\ud800":1}]}}', None),
            (
                "POST",
                "/init",
                b'{"seed":1,"tensors":{"a":{"shape":[1],"scheme":"ones"},"a":{"shape":[2],"scheme":"ones"}}}',
                None,
            ),
        ]
        with httpx.Client(base_url=url, timeout=30) as http:
            for method, path, body, loc in cases:
                r = http.request(method, path, content=body)
                assert r.status_code == 422, (path, r.text)
                assert loc is None or detail(r)["loc"] == loc
            assert http.post("/init", json=ONE).status_code == 200
