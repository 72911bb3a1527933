"""Many tensors in one request: each tensor keyed by (seed, its name), so its bits are its single request's."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import service.engine
from service.engine.bundle import ModelRequest, RowFill, TensorSpec, check_size, plan_model, plan_tensor
from service.engine.errors import InitError, TooLargeError
from service.engine.plan import make_plan
from service.engine.schemes import distributions as d
from service.engine.schemes.registry import REGISTRY, Built, Scheme

SPECS = {
    "fc1.weight": TensorSpec((64, 32), "kaiming_normal", {"mode": "fan_out", "nonlinearity": "relu"}),
    "fc1.bias": TensorSpec((64,), "torch_default", fan_in=32),
    "fc2.weight": TensorSpec((10, 64), "xavier_uniform", dtype="bfloat16"),
    "rec": TensorSpec((16, 48), "orthogonal", {"gain": 2.0}, layout="keras"),
    "head/kernel": TensorSpec((3, 3, 8, 4), "he_normal", dtype="float64"),
    "trunc": TensorSpec((7, 5), "trunc_normal", {"std": 0.02, "a": -0.04, "b": 0.04}, dtype="float16"),
}


def _bits(request: ModelRequest) -> dict[str, bytes]:
    return {t.name: t.tensor().tobytes() for t in plan_model(request)}


def test_each_tensor_has_the_bits_of_its_single_request():
    for tensor in plan_model(ModelRequest(7, SPECS)):
        single = make_plan(SPECS[tensor.name].request(7, tensor.name)).tensor()
        whole = tensor.tensor()
        assert whole.dtype == single.dtype and whole.shape == single.shape
        assert whole.tobytes() == single.tobytes(), tensor.name


def test_adding_removing_and_reordering_tensors_changes_nothing_else():
    full = _bits(ModelRequest(7, SPECS))
    fewer = _bits(ModelRequest(7, {k: v for k, v in SPECS.items() if k not in ("fc1.bias", "rec")}))
    more = _bits(ModelRequest(7, {**SPECS, "extra": TensorSpec((1000,), "normal")}))
    reordered = _bits(ModelRequest(7, dict(reversed(SPECS.items()))))
    for name, bits in fewer.items():
        assert bits == full[name]
    assert {k: more[k] for k in full} == full
    assert reordered == full
    assert list(_bits(ModelRequest(7, dict(reversed(SPECS.items()))))) == list(reversed(SPECS))


def test_seed_and_name_key_the_stream():
    spec = TensorSpec((256,), "normal")
    a = _bits(ModelRequest(1, {"a": spec, "b": spec}))
    assert a["a"] != a["b"]  # same spec, different names: different streams
    assert _bits(ModelRequest(2, {"a": spec}))["a"] != a["a"]


def test_fill_rows_change_only_their_rows_and_cross_chunks():
    spec = TensorSpec((10, 7), "normal", fill_rows=(RowFill(2, 3, 0.0), RowFill(8, 10, 1.5)))
    tensor = plan_tensor(3, "emb", spec)
    plain = make_plan(spec.request(3, "emb")).tensor()
    filled = tensor.tensor()
    assert np.all(filled[2] == 0) and np.all(filled[8:] == np.float32(1.5))
    keep = [0, 1, 3, 4, 5, 6, 7]
    assert filled[keep].tobytes() == plain[keep].tobytes()
    # Any chunking gives the same bytes (fills are applied per chunk, including ones cut mid-row).
    for size in (1, 3, 13, 70):
        assert np.concatenate(list(tensor.chunks(size))).tobytes() == filled.tobytes()
    assert tensor.metadata()["fill_rows"] == [
        {"start": 2, "stop": 3, "value": 0.0},
        {"start": 8, "stop": 10, "value": 1.5},
    ]


def test_fill_rows_on_a_structured_plan_do_not_corrupt_later_chunks():
    spec = TensorSpec((6, 6), "orthogonal", dtype="float64", fill_rows=(RowFill(0, 1, 0.0),))
    tensor = plan_tensor(0, "w", spec)
    assert np.concatenate(list(tensor.chunks(4))).tobytes() == tensor.tensor().tobytes()
    plain = make_plan(spec.request(0, "w")).tensor()
    assert tensor.tensor()[1:].tobytes() == plain[1:].tobytes()


def test_int64_buffers_are_constants():
    tensors = plan_model(
        ModelRequest(
            5,
            {
                "bn.num_batches_tracked": TensorSpec((), "zeros", dtype="int64"),
                "steps": TensorSpec((3,), "constant", {"val": 7}, dtype="int64"),
            },
        )
    )
    counts, steps = (t.tensor() for t in tensors)
    assert counts.dtype == np.int64 and counts.shape == () and counts == 0
    assert steps.tolist() == [7, 7, 7]
    assert tensors[0].dtype.safetensors == "I64" and tensors[0].dtype.npy_descr == "<i8"


def test_int64_constants_keep_their_exact_value_and_params():
    big = (1 << 62) + 1  # not a float64: an int64 val is never rounded through float
    tensor = plan_tensor(0, "n", TensorSpec((2,), "constant", {"val": big}, dtype="int64"))
    assert tensor.tensor().tolist() == [big, big]
    assert tensor.metadata()["params"] == {"val": big} and tensor.metadata()["value"] == big
    ones = plan_tensor(0, "o", TensorSpec((2,), "ones", dtype="int64"))
    assert ones.tensor().tolist() == [1, 1] and ones.metadata()["params"] == {}
    as_float = plan_tensor(0, "f", TensorSpec((1,), "constant", {"val": 7.0}, dtype="int64"))
    assert as_float.metadata()["params"] == {"val": 7} and as_float.tensor().tolist() == [7]


def test_integer_support_is_the_schemes_attribute(monkeypatch):
    assert {s.name for s in REGISTRY.values() if s.integer and not s.namespaced} == {"zeros", "ones", "constant"}
    twos = Scheme("twos", "torch", "2 everywhere", lambda c: Built(d.Constant(2.0)), integer=True)
    monkeypatch.setitem(REGISTRY, "twos", twos)
    assert plan_tensor(0, "t", TensorSpec((3,), "twos", dtype="int64")).tensor().tolist() == [2, 2, 2]
    with pytest.raises(InitError) as caught:
        plan_tensor(0, "t", TensorSpec((3,), "normal", dtype="int64"))
    assert "constant, zeros, ones, " in caught.value.message and ", twos;" in caught.value.message


def test_entries_say_whether_their_bits_are_machine_exact():
    tensors = plan_model(ModelRequest(0, {**SPECS, "steps": TensorSpec((), "zeros", dtype="int64")}))
    assert [t.name for t in tensors if not t.machine_exact] == ["rec"]  # orthogonal: LAPACK


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        (TensorSpec((), "normal", dtype="int64"), "tensors['x'].dtype"),
        (TensorSpec((2,), "constant", {"val": 1.5}, dtype="int64"), "tensors['x'].val"),
        (TensorSpec((2, 3), "kaiming_normal", {"mode": "fan_avg"}), "tensors['x'].mode"),
        (TensorSpec((2, 3), "normal", dtype="int8"), "tensors['x'].dtype"),
        (TensorSpec((4,), "normal", fill_rows=(RowFill(3, 5, 0.0),)), "tensors['x'].fill_rows"),
        (TensorSpec((4,), "kaiming_uniform"), "tensors['x'].shape"),
    ],
)
def test_errors_name_the_tensor_and_the_field(spec, field):
    with pytest.raises(InitError) as caught:
        plan_model(ModelRequest(0, {"x": spec}))
    assert caught.value.field == field
    assert "tensor 'x'" in caught.value.message


def test_limits_apply_to_each_tensor_and_to_the_whole_request():
    request = ModelRequest(0, {"a": TensorSpec((600,), "normal"), "b": TensorSpec((500,), "normal")})
    check_size(request, 600, 1100)
    with pytest.raises(TooLargeError, match=r"in total; the limit is 1000 for the whole request$") as caught:
        check_size(request, 600, 1000)
    assert caught.value.limit == "max_request_elements"
    with pytest.raises(TooLargeError, match=r"tensor 'a' has 600 elements; the limit is 599 per tensor$") as caught:
        check_size(request, 599, 1100)
    assert caught.value.field == "tensors['a'].shape" and caught.value.limit == "max_tensor_elements"
    worded = caught.value.configured_by("INITSERVE_MAX_ELEMENTS")
    assert worded.message.endswith("per tensor (INITSERVE_MAX_ELEMENTS)") and worded.field == caught.value.field
    with pytest.raises(InitError, match="at least one tensor"):
        check_size(ModelRequest(0, {}), 10, 10)


def test_the_engine_knows_no_setting_names():
    engine = Path(service.engine.__file__).parent
    assert [str(path) for path in engine.rglob("*.py") if "INITSERVE_" in path.read_text()] == []
