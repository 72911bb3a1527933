"""The OpenAPI document, completed with what middlewares can answer (auth, body limit, budget, timeout).

Routes document their own errors; the statuses any operation can get from the layers around it are added here,
so every response a client (or schemathesis) can see is in the schema.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from service.api.auth import OPEN_PATHS

_ERROR_REF = {"$ref": "#/components/schemas/ErrorBody"}
_CROSS_CUTTING = {
    "401": "An API key is configured and the request has no valid `Authorization: Bearer <key>`",
    "413": "The request body exceeds INITSERVE_MAX_BODY_BYTES, or the tensor a configured limit",
    "503": "The memory budget is in use by other requests: retry after `Retry-After` seconds",
    "504": "No response within INITSERVE_TIMEOUT_SECONDS",
}


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
