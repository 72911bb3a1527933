"""The OpenAPI document, completed with what middlewares can answer (auth, body limit, budget, timeout).

Routes document their own errors; the statuses any operation can get from the layers around it are added here,
so every response a client (or schemathesis) can see is in the schema.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from service.api.middleware.auth import OPEN_PATHS
from service.engine.bundle import INTEGER_DTYPE
from service.engine.dtypes import DTYPES
from service.formats import FORMATS

_ERROR_REF = {"$ref": "#/components/schemas/ErrorBody"}
_CROSS_CUTTING = {
    "401": "An API key is configured and the request has no valid `Authorization: Bearer <key>`",
    "413": "The request body exceeds INITSERVE_MAX_BODY_BYTES, or the tensor a configured limit",
    "503": "The memory budget is in use by other requests: retry after `Retry-After` seconds",
    "504": "No response within INITSERVE_TIMEOUT_SECONDS",
}

# What a tensor request must also satisfy: rules between fields, which JSON Schema cannot state. Each is checked
# and answered 422 (413 for a limit) naming the field and the rule; schemathesis' positive-data check is off for it.
_CROSS_FIELD_RULES = """

**Rules between fields** (the schema cannot state them; a request that breaks one gets a 422 naming the field
and the rule, or a 413 for a limit):

- The product of `shape` is limited: INITSERVE_MAX_ELEMENTS (binary formats), INITSERVE_MAX_JSON_ELEMENTS (JSON),
  INITSERVE_MAX_STATS_ELEMENTS (/stats); many tensors also in sum (INITSERVE_MAX_REQUEST_ELEMENTS,
  INITSERVE_MAX_JSON_REQUEST_ELEMENTS). A `slice` is limited by its own size, except for orthogonal and sparse.
- `slice` has one `[start, stop)` per dimension of `shape`, with `start < stop <= ` that dimension.
- Ranks: `eye`, `identity` and `sparse` take 2-D shapes, `dirac` 3-D to 5-D, `orthogonal` at least 2-D; in the
  torch layout a scheme needs at least 2 dimensions unless the fans it uses are given (`fan_in`, `fan_out`).
- `dirac` and `sparse` are torch-layout only; `dirac`'s first dimension is divisible by `groups`.
- `uniform`: `a <= b`; `random_uniform`: `minval <= maxval`; truncated normals: `a < b`, with probability mass
  between them; no scheme may reach values beyond the dtype's range (e.g. float16's 65504).
- A scheme's parameters are taken only with that scheme (in GET /init, as further query parameters).
- Formats: {formats}.
- Many tensors: `int64` only for constant schemes with an integral `val`; `fill_rows` ranges inside axis 0.
- Integers are written as integers: `7`, not `7.0` (which JSON Schema counts as an integer).
- Text is valid Unicode and JSON objects have unique keys; GET numbers are ASCII digits.
"""
CROSS_FIELD_RULES = _CROSS_FIELD_RULES.replace(  # what each format cannot hold, from the registry
    "{formats}", "; ".join(rule for f in FORMATS.values() if (rule := f.rules([*DTYPES, INTEGER_DTYPE])))
)
_RULED = (("/init", "post"), ("/init", "get"), ("/stats", "post"))


def install(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        schema.setdefault("components", {}).setdefault("securitySchemes", {})["apiKey"] = {
            "type": "http",
            "scheme": "bearer",
            "description": "Only when INITSERVE_API_KEYS is set; health and metrics stay open.",
        }
        for path, method in _RULED:
            operation = schema["paths"][path][method]
            operation["description"] = operation.get("description", "") + CROSS_FIELD_RULES
        for path, operations in schema["paths"].items():
            for operation in operations.values():
                responses = operation.setdefault("responses", {})
                codes = ["413", "503", "504"] if "requestBody" in operation else ["504"]
                if path not in OPEN_PATHS:
                    codes.append("401")
                    operation["security"] = [{}, {"apiKey": []}]
                for code in codes:
                    responses.setdefault(
                        code,
                        {"description": _CROSS_CUTTING[code], "content": {"application/json": {"schema": _ERROR_REF}}},
                    )
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
