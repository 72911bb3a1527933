"""Every scheme documents itself (formula, source, example) and the README's table is generated from that."""

from __future__ import annotations

import pytest

from service.engine.plan import TensorRequest, make_plan
from service.engine.schemes import table
from service.engine.schemes.registry import ALL_SCHEMES, Scheme


def test_readme_scheme_table_is_generated_from_the_registry():
    readme = table.README.read_text()
    assert table.rewrite(readme) == readme, "README out of date: python -m service.engine.schemes.table"


@pytest.mark.parametrize("scheme", ALL_SCHEMES, ids=lambda s: s.name)
def test_every_scheme_has_a_formula_a_source_and_an_example_that_plans(scheme: Scheme):
    assert scheme.formula and scheme.source and "shape" in scheme.example
    params = {k: v for k, v in scheme.example.items() if k != "shape"}
    plan = make_plan(TensorRequest(tuple(scheme.example["shape"]), scheme.name, 0, params))
    assert plan.scheme is scheme
