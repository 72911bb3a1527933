"""The ASGI application: `uvicorn service.app:app`."""

from __future__ import annotations

from fastapi import FastAPI

from service import __version__
from service.api import errors, routes
from service.api.content_type import JsonBodyMiddleware
from service.api.responses import NotAcceptableError

DESCRIPTION = """Reproducible, initialised neural-network weight tensors.

The same request (with a seed) returns bit-identical tensors on every machine and in every release of the same
`rng` id. Scheme names keep the meaning, argument names and defaults of the framework they come from.
"""


def create_app() -> FastAPI:
    app = FastAPI(title="initserve", version=__version__, description=DESCRIPTION)
    app.include_router(routes.router)
    errors.install(app)
    app.add_exception_handler(NotAcceptableError, routes.not_acceptable)  # type: ignore[arg-type]
    app.add_middleware(JsonBodyMiddleware)
    return app


app = create_app()
