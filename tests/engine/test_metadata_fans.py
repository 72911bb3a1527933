"""Metadata version 2 reports both fans of the shape and which ones the scheme read (issue 10 item 6); philox-v1
keeps version 1 byte for byte (its responses are pinned by tests/api/test_response_bytes.py)."""

from __future__ import annotations

import pytest

from service.engine.plan import TensorRequest, make_plan
from service.engine.random.rng import LATEST_METADATA, Rng
from service.engine.random.rngs.philox_v1 import PhiloxV1


@pytest.mark.parametrize(
    ("shape", "scheme", "params", "layout", "fans"),
    [
        # torch layout [out, in, k]: fan_in = 64*3, fan_out = 27*3; fan_out mode reads only fan_out
        ((27, 64, 3), "kaiming_normal", {"mode": "fan_out"}, None, (192, 81, ["fan_out"])),
        ((27, 64, 3), "kaiming_uniform", {}, None, (192, 81, ["fan_in"])),
        ((256, 784), "xavier_uniform", {}, None, (784, 256, ["fan_in", "fan_out"])),
        # keras layout [in, out]
        ((784, 256), "he_normal", {}, None, (784, 256, ["fan_in"])),
        ((4, 5), "variance_scaling", {"mode": "fan_avg"}, None, (4, 5, ["fan_in", "fan_out"])),
        ((4, 5), "normal", {}, None, (5, 4, [])),
        # torch refuses fans below 2 dimensions: reported as null, and a scheme reading none still works
        ((7,), "normal", {}, None, (None, None, [])),
        ((7,), "zeros", {}, "keras", (7, 7, [])),
    ],
)
def test_version_2_reports_the_fans_of_the_shape_and_which_were_read(shape, scheme, params, layout, fans):
    plan = make_plan(TensorRequest(shape, scheme, 3, params=params, layout=layout))
    meta = plan.metadata(LATEST_METADATA)
    assert (meta["fan_in"], meta["fan_out"], meta["fans_used"]) == fans


def test_an_explicit_fan_is_reported_beside_the_one_the_shape_cannot_give():
    plan = make_plan(TensorRequest((10,), "torch_default", 0, fan_in=16))
    assert {k: plan.metadata(2)[k] for k in ("fan_in", "fan_out", "fans_used")} == {
        "fan_in": 16,
        "fan_out": None,
        "fans_used": ["fan_in"],
    }


def test_philox_v1_keeps_version_1_which_reports_only_the_fans_read():
    plan = make_plan(TensorRequest((27, 64, 3), "kaiming_normal", 3, params={"mode": "fan_out"}))
    assert PhiloxV1.metadata_version == 1 and plan.rng.metadata_version == 1
    meta = plan.metadata()
    assert (meta["fan_in"], meta["fan_out"]) == (None, 81) and "fans_used" not in meta
    assert plan.metadata(1) == meta


def test_rngs_added_later_write_the_latest_version():
    assert Rng.metadata_version == LATEST_METADATA == 2
