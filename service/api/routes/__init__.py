"""The endpoints, one module each: thin wrappers that validate, admit (admission.py) and deliver (delivery.py).

Adding an endpoint is a module here with its `router`, listed below.
"""

from __future__ import annotations

from fastapi import APIRouter

from service.api.routes import catalogue, health, init, stats

router = APIRouter()
for module in (init, stats, catalogue, health):
    router.include_router(module.router)
