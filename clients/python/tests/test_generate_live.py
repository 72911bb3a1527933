"""generate() against the live service: on 1,200 seeded random requests per rng, philox-v1 and philox-v2 (every
scheme it computes, all four dtypes, shapes from 0-D to 5-D, slices, seeds up to 2^64 - 1, non-ASCII names, every
format; for philox-v2 also intervals at the edge of a dtype's values and normals at the edge of its range) the bytes
and the metadata are the service's; the requests the service refuses, generate() refuses with the same loc, type and
message."""

from __future__ import annotations

import random
from typing import Any

import httpx
import numpy as np
import pytest

from initserve_client import RequestError, ServiceError, generate
from initserve_client.contract import document
from initserve_client.generation import NAMESPACED, NOT_LOCAL, SCHEMES, SERVICE_PARAMS

COUNT = 1200
RNGS = ["philox-v1", "philox-v2"]
NAMES = ["weight", "fc.weight", "w/é x", "层.权重", "😀 emoji", "Ω" * 256, "a", "__metadata", "tab\there", "0"]
SEEDS = [0, 1, 7, 2**32 - 1, 2**32 + 5, 2**53, 2**63, 2**64 - 2, 2**64 - 1]
FAN_READERS = {"xavier_uniform", "xavier_normal", "kaiming_uniform", "kaiming_normal", "msra", "torch_default"}
KERAS_FANS = {"variance_scaling", "glorot_uniform", "glorot_normal", "he_uniform", "he_normal", "lecun_uniform"}
KERAS_FANS |= {"lecun_normal"}


def _shape(rng: random.Random, scheme: str) -> list[int]:
    if scheme in ("eye", "identity", "sparse"):
        ndim = 2
    elif scheme == "dirac":
        ndim = rng.randint(3, 5)
    elif scheme in FAN_READERS:
        ndim = rng.randint(2, 4)
    else:
        ndim = rng.choice([0, 1, 1, 2, 2, 2, 3, 4])
    budget = 3000
    shape = []
    for _ in range(ndim):
        dim = rng.randint(1, max(1, min(40, budget)))
        budget //= dim
        shape.append(dim)
    if scheme == "dirac":
        shape[0] *= 2
    return shape


def _number(rng: random.Random, low: float, high: float) -> float | int:
    value = rng.uniform(low, high)
    return rng.choice([value, round(value), round(value, 2)])


def _params(rng: random.Random, scheme: str, shape: list[int]) -> dict[str, Any]:
    spec = SCHEMES[scheme]["params"]
    params: dict[str, Any] = {}
    for key, rules in spec.items():
        if rules["default"] is not None and rng.random() < 0.5:
            continue  # the default
        if rules["type"] == "integer":  # dirac's groups: a divisor of shape[0]
            params[key] = rng.choice([g for g in range(1, shape[0] + 1) if shape[0] % g == 0])
        elif rules["type"] == "string":
            choice = rng.choice(rules["choices"])
            params[key] = choice.upper() if key in ("mode", "distribution") and rng.random() < 0.2 else choice
        elif key == "sparsity":
            params[key] = rng.choice([0.0, 0.1, 0.5, 0.9, 1.0, _number(rng, 0, 1)])
        else:
            low = rules.get("ge", rules.get("gt", -3.0))
            params[key] = _number(rng, max(low, -3.0), rules.get("le", 3.0))
            if "gt" in rules and params[key] <= rules["gt"]:
                params[key] = 0.5
    if scheme in ("uniform", "random_uniform"):
        low, high = ("a", "b") if scheme == "uniform" else ("minval", "maxval")
        pair = sorted([params.get(low, SCHEMES[scheme]["params"][low]["default"]), params.get(high, 1e9)])
        params[low], params[high] = pair[0], min(pair[1], SCHEMES[scheme]["params"][high]["default"] + 3)
        if params[low] > params[high]:
            params[low] = params[high]
    if scheme == "trunc_normal":
        a, b = sorted(rng.sample([-8.0, -3.0, -2.0, -1.0, -0.5, 0.0, 0.3, 1.0, 2.5, 8.0, 9.0], 2))
        params["a"], params["b"] = a, b
    return params


def _v2_edges(rng: random.Random, request: dict[str, Any]) -> None:
    """philox-v2's own rules at their edges: an interval holding few or no values of the dtype (its cuts, section
    7), a normal whose tail reaches the dtype's largest value."""
    scheme = request["scheme"]
    centre = rng.choice([1.0, 1.004, -3.0, 0.05, 1e-40, 65500.0, 3.0, 0.3])
    width = rng.choice([1e-7, 1e-4, 1e-3, 2.0**-7, 2.0**-9, 5.0])
    if scheme in ("uniform", "random_uniform"):
        low, high = ("a", "b") if scheme == "uniform" else ("minval", "maxval")
        request[low], request[high] = centre, centre + width
    elif scheme == "trunc_normal":
        request["a"], request["b"] = centre, centre + width
        request["std"] = rng.choice([1.0, 1e-3, 50.0])
    elif scheme in ("normal", "random_normal"):
        std = "std" if scheme == "normal" else "stddev"
        request["mean"], request[std] = rng.choice([(0.0, 4778.666004619225), (0.0, 4778.666004619226), (6e4, 400.0)])
        request["mean"] = rng.choice([request["mean"], -request["mean"]])
        request["dtype"] = "float16"


def random_request(rng: random.Random, rng_id: str = "philox-v1") -> dict[str, Any]:
    scheme = rng.choice([name for name in SCHEMES if name not in NOT_LOCAL])
    shape = _shape(rng, scheme)
    request: dict[str, Any] = {"shape": shape, "scheme": scheme, **_params(rng, scheme, shape)}
    request["seed"] = rng.choice([*SEEDS, rng.getrandbits(64), rng.getrandbits(32)])
    if rng.random() < 0.7:
        request["name"] = rng.choice(NAMES)
    request["dtype"] = rng.choice(["float32", "float64", "float16", "bfloat16"])
    if rng.random() < 0.2 and scheme not in ("dirac", "sparse"):
        request["layout"] = rng.choice(["torch", "keras"])
    if rng.random() < 0.15 and (scheme in FAN_READERS or scheme in KERAS_FANS or scheme == "uniform_unit_scaling"):
        request["fan_in"] = rng.choice([1, 3, 1000, 2**40, 2**64 - 1])
        if rng.random() < 0.5 or len(shape) < 2:
            request["fan_out"] = rng.randint(1, 5000)
    if shape and rng.random() < 0.4:
        region = []
        for dim in shape:
            start = rng.randrange(dim)
            region.append([start, rng.randint(start + 1, dim)])
        request["slice"] = region
    formats = ["safetensors", "json"] + ([] if request["dtype"] == "bfloat16" else ["npy"])
    request["format"] = rng.choice(formats)
    if rng_id != "philox-v1":  # the same draws as before for philox-v1's requests
        request["rng"] = rng_id
        if rng.random() < 0.3:
            _v2_edges(rng, request)
    return request


@pytest.mark.parametrize("rng_id", RNGS)
def test_generate_equals_the_service_on_random_requests(client, rng_id):
    rng = random.Random(20261201)
    served = refused = 0
    for _ in range(COUNT):
        request = random_request(rng, rng_id)
        try:
            fetched = client.fetch_tensor(request)
        except ServiceError as error:  # a combination the service refuses: generate() must refuse it the same way
            with pytest.raises(RequestError) as local:
                generate(request)
            assert local.value.detail[0] == {**error.detail[0], "loc": error.detail[0]["loc"]}, request
            refused += 1
            continue
        tensor = generate(request)
        assert tensor.dtype == fetched.dtype and tensor.shape == fetched.shape, request
        assert tensor.array.tobytes() == fetched.array.tobytes(), request
        if request["format"] != "npy":  # .npy carries no metadata; safetensors leaves null values out
            ours = {
                key: value for key, value in tensor.metadata.items() if value is not None or request["format"] == "json"
            }
            assert ours == {key: value for key, value in fetched.metadata.items() if key != "service"}, request
        served += 1
    assert served >= 1000 and refused < 100, (served, refused)


@pytest.mark.parametrize("rng_id", RNGS)
def test_large_tensors_and_block_boundaries(client, rng_id):
    # Whole chunks, a chunk boundary crossed by a slice, odd sizes, and the double-rounding elements' tensor; under
    # philox-v2 the normal's every path (77,100 float64 normals: about 20 tails) and sparse's wide normals.
    for request in (
        {"shape": [300, 257], "scheme": "kaiming_normal", "seed": 2**64 - 1, "dtype": "float64"},
        {"shape": [70001], "scheme": "trunc_normal", "a": -0.3, "b": 4.0, "seed": 3, "dtype": "float16"},
        {
            "shape": [65537, 3],
            "scheme": "he_uniform",
            "seed": 5,
            "dtype": "bfloat16",
            "slice": [[32000, 33500], [1, 3]],
        },
        {"shape": [4096, 64], "scheme": "sparse", "sparsity": 0.37, "seed": 9, "name": "稀疏"},
        {"shape": [1 << 18], "scheme": "normal", "seed": 2**63 + 11, "dtype": "bfloat16", "slice": [[77, 200077]]},
        # std 0: section 5.4's 0.0 + std * z is +0.0 wherever z is negative, not std * z's -0.0
        {"shape": [64, 16], "scheme": "sparse", "sparsity": 0.25, "std": 0.0, "seed": 2, "dtype": "float64"},
    ):
        request = {**request, "rng": rng_id}
        fetched = client.fetch_tensor(request)
        assert generate(request).array.tobytes() == fetched.array.tobytes(), request


REFUSED = [
    {"shape": [2, 3], "scheme": "normal", "std": -1},
    {"shape": [2, 0], "scheme": "normal"},
    {"shape": [1] * 9, "scheme": "normal"},
    {"shape": [2, True], "scheme": "normal"},
    {"shape": [2.0, 3], "scheme": "normal"},
    {"shape": "2,3", "scheme": "normal"},
    {"scheme": "normal"},
    {"shape": [2, 3]},
    {"shape": [2, 3], "scheme": "nromal"},
    {"shape": [2, 3], "scheme": 5},
    {"shape": [2, 3], "scheme": "normal", "foo": 1},
    {"shape": [2, 3], "scheme": "zeros", "std": 1},
    {"shape": [2, 3], "scheme": "normal", "seed": -1},
    {"shape": [2, 3], "scheme": "normal", "seed": 2**64},
    {"shape": [2, 3], "scheme": "normal", "seed": True},
    {"shape": [2, 3], "scheme": "normal", "seed": "5"},
    {"shape": [2, 3], "scheme": "normal", "name": ""},
    {"shape": [2, 3], "scheme": "normal", "name": "x" * 257},
    {"shape": [2, 3], "scheme": "normal", "name": "__metadata__"},
    {"shape": [2, 3], "scheme": "normal", "name": 5},
    {"shape": [2, 3], "scheme": "normal", "dtype": "int8"},
    {"shape": [2, 3], "scheme": "normal", "layout": "tf"},
    {"shape": [2, 3], "scheme": "normal", "fan_in": 0},
    {"shape": [2, 3], "scheme": "normal", "fan_out": 2**64},
    {"shape": [2, 3], "scheme": "normal", "rng": "mt"},
    {"shape": [2, 3], "scheme": "normal", "slice": [[0, 2]]},
    {"shape": [2, 3], "scheme": "normal", "slice": [[0, 2], [2, 2]]},
    {"shape": [2, 3], "scheme": "normal", "slice": [[0, 2], [0, 3, 4]]},
    {"shape": [2, 3], "scheme": "normal", "slice": [[0, 2], [1]]},
    {"shape": [2, 3], "scheme": "normal", "slice": [[0, 2], [1, 2.0]]},
    {"shape": [2, 3], "scheme": "normal", "std": "1"},
    {"shape": [2, 3], "scheme": "normal", "std": None},
    {"shape": [2, 3], "scheme": "normal", "mean": 10**400},
    {"shape": [2, 3], "scheme": "dirac", "groups": 1.0},
    {"shape": [2, 3], "scheme": "normal", "mean": 100000, "dtype": "float16"},
    {"shape": [2], "scheme": "constant", "val": 65505, "dtype": "float16"},
    {"shape": [2], "scheme": "constant", "val": 1e308, "dtype": "float32"},
    {"shape": [2, 3], "scheme": "uniform", "a": -1e308, "b": 1e308, "dtype": "float64"},
    {"shape": [2], "scheme": "uniform", "a": -1.35e154, "b": 0, "dtype": "float64"},
    {"shape": [2], "scheme": "normal", "std": 1.3407807929942597e154, "dtype": "float64"},
    {"shape": [2, 2], "scheme": "identity", "gain": 1e154, "dtype": "float64"},
    {"shape": [2, 2], "scheme": "sparse", "sparsity": 0.5, "std": 1e300},
    {"shape": [2], "scheme": "trunc_normal", "std": 1e200, "a": -1e300, "b": 1e300, "dtype": "float64"},
    {"shape": [2, 2], "scheme": "trunc_normal", "std": 1e-300, "a": -1e-300, "b": 1e9, "dtype": "float64"},
    {"shape": [2, 2], "scheme": "uniform_unit_scaling", "factor": 1e308, "dtype": "float64"},
    {"shape": [2, 3], "scheme": "uniform", "a": 2, "b": 1},
    {"shape": [2, 2], "scheme": "random_uniform", "minval": 1, "maxval": 0},
    {"shape": [4, 3], "scheme": "trunc_normal", "a": 2, "b": 2},
    {"shape": [4, 3], "scheme": "trunc_normal", "a": 40, "b": 41},
    {"shape": [2, 3], "scheme": "xavier_uniform", "gain": 1e200},
    {"shape": [2, 2], "scheme": "truncated_normal", "mean": 1e308, "stddev": 1e308},
    # section 9: alpha infinite (a - mean overflows) makes v NaN, which the service refuses
    {"shape": [4], "scheme": "trunc_normal", "mean": 1.7e308, "a": -1.7e308, "b": 1.7e308, "dtype": "float64"},
    # section 5.1's std > 0 and a < b, for truncated normals another scheme derives
    {"shape": [4, 4], "scheme": "variance_scaling", "scale": 5e-324, "fan_in": 2**64 - 1},
    {"shape": [4, 4], "scheme": "truncated_normal", "mean": 1e300, "stddev": 1e-300},
    # section 1.1's 2^63 - 1 elements: after the fields' own rules and the slice's bounds, before the scheme's rules
    {"shape": [2**62, 3], "scheme": "normal", "slice": [[0, 1], [0, 1]]},
    {"shape": [2**62, 3], "scheme": "normal", "seed": -1, "slice": [[0, 1], [0, 1]]},
    {"shape": [2**62, 3], "scheme": "normal", "slice": [[0, 1], [0, 4]]},
    {"shape": [2**62, 3], "scheme": "uniform", "a": 2, "b": 1, "slice": [[0, 1], [0, 1]]},
    {"shape": [2**62, 3], "scheme": "normal", "format": "npy", "dtype": "bfloat16", "slice": [[0, 1], [0, 1]]},
    {"shape": [2, 3], "scheme": "kaiming_uniform", "nonlinearity": "gelu"},
    {"shape": [2, 3], "scheme": "kaiming_uniform", "nonlinearity": "RELU"},
    {"shape": [2, 3], "scheme": "kaiming_uniform", "mode": "fan_avg"},
    {"shape": [2, 3], "scheme": "variance_scaling", "distribution": "normal"},
    {"shape": [2, 3], "scheme": "variance_scaling", "distribution": "gauss"},
    {"shape": [2, 3], "scheme": "variance_scaling", "mode": "fan"},
    {"shape": [2, 3], "scheme": "variance_scaling", "mode": 5},
    {"shape": [2, 3], "scheme": "variance_scaling", "scale": 0},
    {"shape": [3], "scheme": "xavier_uniform", "fan_in": 3},
    {"shape": [3], "scheme": "kaiming_uniform", "fan_out": 3},
    {"shape": [2, 3, 4], "scheme": "eye"},
    {"shape": [2, 3, 4], "scheme": "identity"},
    {"shape": [2, 3, 4], "scheme": "sparse", "sparsity": 0.1},
    {"shape": [2, 3], "scheme": "dirac"},
    {"shape": [4, 3, 3], "scheme": "dirac", "groups": 3},
    {"shape": [4, 3, 3], "scheme": "dirac", "layout": "keras"},
    {"shape": [4, 3], "scheme": "sparse", "sparsity": 0.5, "layout": "keras"},
    {"shape": [4, 3], "scheme": "sparse"},
    {"shape": [4, 3], "scheme": "sparse", "sparsity": 1.5},
    {"shape": [4, 3], "scheme": "constant"},
    {"shape": [2, 3], "scheme": "normal", "format": "npy", "dtype": "bfloat16"},
    {"shape": [2, 3], "scheme": "normal", "format": "xml"},
]


@pytest.mark.parametrize("rng_id", RNGS)
@pytest.mark.parametrize("request_body", REFUSED, ids=lambda body: str(body)[:70])
def test_refused_as_the_service_refuses(client, request_body, rng_id):
    request_body = {"rng": rng_id, **request_body}
    with pytest.raises(ServiceError) as served:
        client.fetch_tensor(request_body)
    with pytest.raises(RequestError) as local:
        generate(request_body)
    assert served.value.status == local.value.status == 422
    assert local.value.detail == served.value.detail[:1]


@pytest.mark.parametrize("rng_id", RNGS)
@pytest.mark.parametrize(
    "case", document()["vectors"]["admission"], ids=lambda case: f"{case['request']['scheme']}-{case['refused_at']}"
)
def test_admission_vectors_as_the_service_admits_them(client, case, rng_id):
    # Section 9's boundaries from both sides: the same refusal (loc, msg, type), or the same bytes. philox-v2 keeps
    # section 9 and adds its own rules after it (docs/philox-v2.md section 7): a normal served at philox-v1's
    # largest |z| (8.57) is refused for its tail (13.71), so its side of each boundary is the service's answer.
    request = {key: int(value) if key == "seed" else value for key, value in case["request"].items()}
    request["rng"] = rng_id
    refused_at = case["refused_at"]
    if rng_id != "philox-v1":
        try:
            client.fetch_tensor(request)
            refused_at = None
        except ServiceError as error:
            refused_at = error.detail[0]["loc"][-1]
            assert case["refused_at"] in (None, refused_at), error.detail  # v2 refuses all that v1 refuses, there
    if refused_at is None:
        assert generate(request).array.tobytes() == client.fetch_tensor(request).array.tobytes()
        return
    with pytest.raises(ServiceError) as served:
        client.fetch_tensor(request)
    with pytest.raises(RequestError) as local:
        generate(request)
    assert local.value.detail == served.value.detail[:1]


def test_every_name_the_service_knows_is_known_here(url: str):
    """The contract's scheme tables name exactly the service's schemes, with their parameters, in its order (its
    unknown-scheme refusal lists them)."""
    served = {s["name"]: [p["name"] for p in s["params"]] for s in httpx.get(f"{url}/schemes").json()["schemes"]}
    assert served == SERVICE_PARAMS and list(served) == list(SERVICE_PARAMS)
    assert list(SERVICE_PARAMS) == [*SCHEMES, *NAMESPACED]


def test_what_is_not_computed_locally_is_refused_by_name():
    for request, loc, words in (
        ({"shape": [4, 4], "scheme": "orthogonal"}, "scheme", "'orthogonal' is not generated locally"),
        ({"shape": [4, 4], "scheme": "orthogonal", "rng": "philox-v2"}, "scheme", "'orthogonal' is not generated"),
        # the framework-namespaced names: the service's, with no bits in the specification
        ({"shape": [4, 4], "scheme": "jax.he_normal"}, "scheme", "'jax.he_normal' is not generated locally"),
        ({"shape": [4], "scheme": "torch.normal", "rng": "philox-v2"}, "scheme", "the bare names' bits only"),
        ({"shape": [4], "scheme": "normal", "rng": "torch-2.13"}, "rng", "'torch-2.13' is torch's"),
        ({"seed": 1, "tensors": {"w": {"shape": [2], "scheme": "ones"}}}, "tensors", "once per tensor"),
        ({"seed": 1, "model": {"layers": ["linear(2, 2)"]}}, "model", "fetch it from the service"),
    ):
        with pytest.raises(RequestError) as refused:
            generate(request)
        (item,) = refused.value.detail
        assert item["loc"] == ["body", loc] and item["type"] == "not_local" and words in item["msg"], item


def test_a_lone_surrogate_name_is_refused():
    # httpx cannot even send this name (not UTF-8); the service answers curl's "\ud800" with this loc and type.
    with pytest.raises(RequestError) as refused:
        generate({"shape": [2], "scheme": "normal", "name": "w\ud800"})
    assert refused.value.detail[0]["loc"] == ["body", "name"] and refused.value.detail[0]["type"] == "unicode_invalid"


def test_no_seed_draws_one_below_2_53_and_reports_it():
    tensor = generate({"shape": [5], "scheme": "normal"})
    seed = tensor.metadata["seed"]
    assert 0 <= seed < 2**53
    again = generate({"shape": [5], "scheme": "normal", "seed": seed})
    assert again.array.tobytes() == tensor.array.tobytes()
    assert np.isfinite(tensor.array).all()


V2_EDGES = [
    # docs/philox-v2.md section 7's refusals at dtype, their neighbours that are served, and section 9's order
    {"shape": [8], "scheme": "uniform", "a": 1.004, "b": 1.0078125, "dtype": "bfloat16"},
    {"shape": [8], "scheme": "uniform", "a": 1.004, "b": 1.0078126, "dtype": "bfloat16"},
    {"shape": [8], "scheme": "uniform", "a": 65500, "b": 65504, "dtype": "float16"},
    {"shape": [8], "scheme": "uniform", "a": 65488, "b": 65504, "dtype": "float16"},
    {"shape": [8], "scheme": "random_uniform", "minval": -1e-46, "maxval": 1e-46},
    {"shape": [8], "scheme": "uniform", "a": 1e-46, "b": 1e-45},
    {"shape": [8], "scheme": "uniform", "a": -3.0, "b": -2.999, "dtype": "bfloat16"},
    {"shape": [8], "scheme": "trunc_normal", "a": 1.004, "b": 1.0078, "dtype": "bfloat16"},
    {"shape": [8], "scheme": "trunc_normal", "a": 0.999, "b": 1.001, "dtype": "bfloat16"},
    {"shape": [8], "scheme": "trunc_normal", "std": 1e-45, "a": 1e-46, "b": 1e-45},
    {"shape": [8], "scheme": "trunc_normal", "std": 50.0, "a": 65470, "b": 65500, "dtype": "float16"},
    {"shape": [8], "scheme": "trunc_normal", "a": 40, "b": 41, "dtype": "bfloat16"},
    {"shape": [8], "scheme": "truncated_normal", "mean": 1.004, "stddev": 1e-7, "dtype": "bfloat16"},
    {"shape": [8], "scheme": "normal", "std": 4778.666004619225, "dtype": "float16"},
    {"shape": [8], "scheme": "normal", "std": 4778.666004619226, "dtype": "float16"},
    {"shape": [8], "scheme": "normal", "std": 7642, "dtype": "float16"},
    {"shape": [8], "scheme": "random_normal", "mean": -6e4, "stddev": 400, "dtype": "float16"},
    {"shape": [8], "scheme": "normal", "std": 2.482437228037361e37},
    {"shape": [8], "scheme": "normal", "std": 2.4824372280373606e37},
    {"shape": [8], "scheme": "normal", "mean": 1e38, "std": 1.7432175770619905e37, "dtype": "bfloat16"},
    {"shape": [8, 8], "scheme": "sparse", "sparsity": 0.5, "std": 4779, "dtype": "float16"},
    {"shape": [8, 8], "scheme": "kaiming_normal", "fan_in": 1, "dtype": "float16"},
    {"shape": [8], "scheme": "uniform", "a": 2.5, "b": 2.5, "dtype": "bfloat16"},
    {"shape": [8], "scheme": "trunc_normal", "a": -1e-300, "b": 1e-300, "std": 1e-300},
    {"shape": [8], "scheme": "normal", "std": 1.3e154, "dtype": "float64"},
    {"shape": [8], "scheme": "uniform", "a": -1, "b": 3, "dtype": "float64"},
]


@pytest.mark.parametrize("request_body", V2_EDGES, ids=lambda body: str(body)[:80])
def test_philox_v2_edges_as_the_service_answers_them(client, request_body):
    request = {**request_body, "seed": 13, "name": "边", "rng": "philox-v2"}
    try:
        fetched = client.fetch_tensor(request)
    except ServiceError as served:
        with pytest.raises(RequestError) as local:
            generate(request)
        assert local.value.detail == served.detail[:1]
        return
    tensor = generate(request)
    assert tensor.array.tobytes() == fetched.array.tobytes()
    ours = {key: value for key, value in tensor.metadata.items() if value is not None}  # safetensors leaves out nulls
    assert ours == {key: value for key, value in fetched.metadata.items() if key != "service"}
