"""POST /stats: closed-form moments, empirical moments of the very tensor /init returns, KS and histogram."""

from __future__ import annotations

import math

import numpy as np
import pytest
from safetensors.numpy import load as st_load
from scipy import stats as sps

from service.engine.stats import kolmogorov_pvalue

TRUNC2 = sps.truncnorm(-2, 2)


@pytest.mark.parametrize(
    ("body", "dist"),
    [
        ({"shape": [256, 784], "scheme": "kaiming_normal"}, sps.norm(scale=math.sqrt(2 / 784))),
        ({"shape": [256, 784], "scheme": "xavier_uniform"}, sps.uniform(-math.sqrt(6 / 1040), 2 * math.sqrt(6 / 1040))),
        (
            {"shape": [784, 256], "scheme": "he_normal"},
            sps.truncnorm(-2, 2, scale=math.sqrt(2 / 784) / 0.87962566103423978),
        ),
        (
            {"shape": [300, 200], "scheme": "trunc_normal", "mean": 0.5, "std": 2.0, "a": -1.0, "b": 3.0},
            sps.truncnorm(-0.75, 1.25, loc=0.5, scale=2.0),
        ),
        ({"shape": [300, 200], "scheme": "truncated_normal", "stddev": 0.1}, sps.truncnorm(-2, 2, scale=0.1)),
        (
            {"shape": [64, 32, 3, 3], "scheme": "lecun_uniform", "layout": "torch"},
            sps.uniform(-math.sqrt(3 / 288), 2 * math.sqrt(3 / 288)),
        ),
    ],
)
def test_theory_against_scipy_and_empirical_against_the_tensor(client, body, dist):
    body = {**body, "seed": 11}
    s = client.post("/stats", json=body).json()
    assert s["theoretical"]["mean"] == pytest.approx(dist.mean(), abs=1e-15)
    assert s["theoretical"]["variance"] == pytest.approx(dist.var(), rel=1e-12)
    assert s["theoretical"]["std"] == pytest.approx(dist.std(), rel=1e-12)

    tensor = st_load(client.post("/init", json=body).content)["weight"].astype(np.float64)
    emp = s["empirical"]
    assert emp["count"] == tensor.size
    assert emp["mean"] == pytest.approx(tensor.mean(), rel=1e-9, abs=1e-12)
    assert emp["variance"] == pytest.approx(tensor.var(), rel=1e-9)
    assert (emp["min"], emp["max"]) == (tensor.min(), tensor.max())
    # sampling error of the variance: a few standard errors (4th moment <= 3 var^2 for these)
    assert emp["variance"] == pytest.approx(dist.var(), rel=6 * math.sqrt(2 / tensor.size))

    ks = s["ks"]
    reference = sps.kstest(tensor.reshape(-1), dist.cdf)
    assert ks["n"] == tensor.size
    assert ks["statistic"] == pytest.approx(reference.statistic, abs=2e-7)  # float32 rounding of the tensor
    assert ks["pvalue"] > 1e-3

    hist = s["histogram"]
    assert len(hist["edges"]) == 33 and sum(hist["counts"]) == tensor.size
    assert hist["counts"] == np.histogram(tensor, bins=np.array(hist["edges"]))[0].tolist()
    assert sum(hist["expected"]) == pytest.approx(tensor.size, rel=1e-3)


@pytest.mark.parametrize(
    ("body", "mean", "variance"),
    [
        ({"shape": [3, 5], "scheme": "eye"}, 3 / 15, 3 / 15 - (3 / 15) ** 2),
        ({"shape": [4, 4], "scheme": "identity", "gain": 2.0}, 0.5, 4 * 4 / 16 - 0.25),
        ({"shape": [4, 2, 3, 3], "scheme": "dirac", "groups": 2}, 4 / 72, 4 / 72 - (4 / 72) ** 2),
        ({"shape": [7, 9], "scheme": "constant", "val": -1.5}, -1.5, 0.0),
        ({"shape": [50, 40], "scheme": "orthogonal", "gain": 3.0}, 0.0, 9 / 50),
        ({"shape": [50, 40], "scheme": "sparse", "sparsity": 0.3}, 0.0, (1 - 15 / 50) * 1e-4),
    ],
)
def test_structured_schemes_have_closed_form_moments(client, body, mean, variance):
    s = client.post("/stats", json={**body, "seed": 2}).json()
    assert s["theoretical"]["mean"] == pytest.approx(mean, abs=1e-15)
    assert s["theoretical"]["variance"] == pytest.approx(variance, rel=1e-12, abs=1e-18)
    assert s["ks"] is None and s["histogram"]["expected"] is None
    if body["scheme"] in ("eye", "identity", "dirac", "constant"):
        assert s["empirical"]["mean"] == pytest.approx(mean, rel=1e-12, abs=1e-15)
        assert s["empirical"]["variance"] == pytest.approx(variance, rel=1e-9, abs=1e-15)
    if body["scheme"] == "orthogonal":  # sum of squares is exactly gain^2 * min(r, c)
        emp = s["empirical"]
        assert (emp["variance"] + emp["mean"] ** 2) * 2000 == pytest.approx(9 * 40, rel=1e-5)


def test_bins_and_metadata(client):
    s = client.post("/stats", json={"shape": [100], "scheme": "normal", "seed": 1, "bins": 5}).json()
    assert len(s["histogram"]["counts"]) == 5 and s["metadata"]["scheme"] == "normal"
    assert client.post("/stats", json={"shape": [100], "scheme": "normal", "bins": 0}).status_code == 422


def test_stats_report_both_fans_and_the_ones_read(client):
    body = {"shape": [27, 64, 3], "scheme": "kaiming_normal", "mode": "fan_out", "seed": 1}
    meta = client.post("/stats", json=body).json()["metadata"]
    assert (meta["fan_in"], meta["fan_out"], meta["fans_used"]) == (192, 81, ["fan_out"])


def test_float16_stats_describe_the_rounded_tensor(client):
    body = {"shape": [128, 128], "scheme": "kaiming_uniform", "seed": 5, "dtype": "float16"}
    s = client.post("/stats", json=body).json()
    tensor = st_load(client.post("/init", json=body).content)["weight"].astype(np.float64)
    assert s["empirical"]["mean"] == pytest.approx(tensor.mean(), rel=1e-9, abs=1e-12)
    assert s["ks"]["computed_on"].startswith("float64 values before rounding")


@pytest.mark.parametrize("n", [40, 100, 1000, 100000])
@pytest.mark.parametrize("d", [0.005, 0.02, 0.05, 0.1, 0.2])
def test_kolmogorov_pvalue_matches_scipy(n, d):
    exact = sps.kstwo.sf(d, n)
    if exact < 1e-12:
        return
    assert kolmogorov_pvalue(d, n) == pytest.approx(exact, rel=0.05, abs=2e-3)
