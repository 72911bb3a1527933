"""Hostile input beyond the schema, in-process: any JSON value as a body, any bytes as a query string, any text as
tensor names. Nothing may be a 5xx, and a 200 must hold what was asked for (names a format's reader gives back).
Bounded: a fixed number of derandomised examples each."""

from __future__ import annotations

import io
import json
from urllib.parse import quote_from_bytes

import numpy as np
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.numpy import load

from service.app import create_app
from service.settings import Settings

CLIENT = TestClient(
    create_app(Settings(max_elements=1 << 12, max_json_elements=1 << 10, max_stats_elements=1 << 10)),
    raise_server_exceptions=False,
)
BOUNDED = settings(
    max_examples=300, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck)
)

FIELDS = ["shape", "scheme", "seed", "dtype", "layout", "fan_in", "fan_out", "name", "format", "rng", "slice", "bins"]
FIELDS += ["tensors", "model", "layers", "rules", "type", "args", "fill_rows", "start", "stop", "value", "std", "val"]
FIELDS += ["mode", "nonlinearity", "groups", "sparsity", "a", "b", "gain", "sequential", "linear", "normal", "npz"]
INTEGERS = st.one_of(
    st.integers(-3, 70), st.sampled_from([2**53 + 1, 2**63 - 1, 2**63, 2**64 - 1, 2**64, 2**70, -(2**63) - 1])
)
LONE_SURROGATES = st.sampled_from(["\ud800", "a\udfff", "\udc00\ud800"])  # JSON can escape them; UTF-8 cannot
TEXT = st.one_of(st.sampled_from(FIELDS), st.text(max_size=12), LONE_SURROGATES)
SCALARS = st.one_of(st.none(), st.booleans(), INTEGERS, st.floats(allow_nan=False, allow_infinity=False), TEXT)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(TEXT, inner, max_size=5)),
    max_leaves=20,
)


def _no_server_error(r) -> None:
    assert r.status_code < 500 or r.status_code == 503, (r.status_code, r.text[:500])
    if r.status_code >= 400:
        assert r.headers["content-type"] == "application/json"
        assert r.json()["detail"], r.text


@given(body=st.dictionaries(TEXT, VALUES, max_size=6), path=st.sampled_from(["/init", "/stats"]))
@BOUNDED
def test_any_json_object_is_answered_without_a_server_error(body, path):
    _no_server_error(CLIENT.post(path, content=json.dumps(body).encode()))


@given(
    base=st.fixed_dictionaries(
        {
            "shape": st.sampled_from([[2], [2, 3], [3, 4, 5], []]),
            "scheme": st.sampled_from(["normal", "dirac", "eye", "kaiming_normal", "xavier_uniform"]),
        }
    ),
    extra=st.dictionaries(
        st.one_of(st.sampled_from(FIELDS), LONE_SURROGATES), st.one_of(INTEGERS, LONE_SURROGATES, VALUES), max_size=3
    ),
)
@BOUNDED
def test_near_valid_requests_are_answered_without_a_server_error(base, extra):
    _no_server_error(CLIENT.post("/init", content=json.dumps({**base, **extra}).encode()))


@given(
    query=st.lists(
        st.tuples(
            st.one_of(st.sampled_from(FIELDS), st.binary(max_size=6)),
            st.one_of(
                st.binary(max_size=12),
                st.from_regex(r"[0-9,:]{0,20}", fullmatch=True).map(str.encode),
                st.sampled_from([20, 21, 100, 101, 4300, 4301, 6000]).map(lambda n: b"7" * n),  # int() stops at 4,300
            ),
        ),
        max_size=8,
    )
)
@BOUNDED
def test_any_query_string_is_answered_without_a_server_error(query):
    text = "&".join(
        f"{quote_from_bytes(k if isinstance(k, bytes) else k.encode())}={quote_from_bytes(v)}" for k, v in query
    )
    _no_server_error(CLIENT.get(f"/init?{text}"))


@given(
    names=st.lists(st.text(min_size=1, max_size=8), min_size=1, max_size=4, unique=True),
    fmt=st.sampled_from(["npz", "safetensors", "json"]),
)
@BOUNDED
def test_tensor_names_come_back_as_given_or_are_refused(names, fmt):
    body = {
        "seed": 1,
        "format": fmt,
        "tensors": {n: {"shape": [i + 1], "scheme": "normal"} for i, n in enumerate(names)},
    }
    r = CLIENT.post("/init", content=json.dumps(body).encode())
    _no_server_error(r)
    if r.status_code != 200:
        assert r.status_code == 422 and fmt in ("npz", "safetensors"), r.text
        return
    if fmt == "npz":
        archive = np.load(io.BytesIO(r.content))
        got = {n: archive[n].shape for n in names}
    elif fmt == "safetensors":
        got = {n: v.shape for n, v in load(r.content).items()}
    else:
        got = {n: (len(t["data"]),) for n, t in json.loads(r.content)["tensors"].items()}
    assert got == {n: (i + 1,) for i, n in enumerate(names)}
