"""schemathesis against the app's own OpenAPI schema, in-process: no server errors, and every response (status,
content type, body) conforms to the schema. Bounded: a fixed number of derandomised examples per operation."""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import negative_data_rejection, positive_data_acceptance

from service.app import create_app
from service.settings import Settings

# Small limits keep generated tensors cheap; the limits themselves are part of what is fuzzed (413s).
APP = create_app(
    Settings(
        max_elements=1 << 16,
        max_json_elements=1 << 12,
        max_stats_elements=1 << 14,
        max_diagnose_work=1 << 16,
        max_body_bytes=1 << 16,
    )
)
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)


@schema.parametrize()
@settings(max_examples=40, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_schema(case):
    # Schema-valid requests may rightly get a 4xx (limits; framework semantics such as fans of a 1-D shape);
    # and "negative" data is judged by the schema alone, which cannot express all our rules.
    # Everything else runs: no 5xx, documented status codes, content types, headers and bodies.
    case.call_and_validate(excluded_checks=[positive_data_acceptance, negative_data_rejection])
