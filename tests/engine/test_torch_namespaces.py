"""torch.* under rng torch-2.13 against torch 2.13 itself (the `torch` extra), the edge cases torch accepts
included: bit for bit (orthogonal within 1e-6, its QR), after `torch.manual_seed(seed)`."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from service.engine.plan import TensorRequest, make_plan  # noqa: E402

CASES = [
    ("trunc_normal", {"a": 0.5, "b": 0.5}, (4, 5)),
    ("trunc_normal", {"std": -1.0}, (40, 50)),
    ("trunc_normal", {"a": 40.0, "b": 41.0}, (40, 50)),
    ("trunc_normal", {"mean": 1.0, "std": 0.5, "a": -30.0, "b": -29.0}, (40, 50)),
    ("constant", {"val": True}, (4, 5)),
    ("sparse", {"sparsity": 1.5}, (6, 5)),
    ("kaiming_normal", {"mode": "FAN_OUT", "nonlinearity": "relu"}, (64, 32)),
    ("xavier_uniform", {"gain": 2.0}, (64, 32)),
    ("orthogonal", {"gain": -2.0}, (24, 32)),
]


@pytest.mark.filterwarnings("ignore:mean is more than 2 std")
@pytest.mark.parametrize(("name", "params", "shape"), CASES, ids=lambda c: str(c))
def test_torch_namespace_is_torch(name, params, shape):
    seed = 11
    torch.manual_seed(seed)
    expected = torch.empty(shape)
    getattr(torch.nn.init, f"{name}_")(expected, **params)
    ours = make_plan(TensorRequest(shape, f"torch.{name}", seed, params, rng="torch-2.13")).tensor()
    if name == "orthogonal":
        np.testing.assert_allclose(ours, expected.numpy(), atol=1e-6)
    else:
        assert np.array_equal(ours, expected.numpy())
