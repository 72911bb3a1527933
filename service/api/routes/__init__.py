"""The endpoints, one module each with its `router`: thin wrappers that validate, admit (admission.py) and deliver
(delivery.py). Every module of this package is included: adding an endpoint is adding a module here."""

from __future__ import annotations

import importlib
import pkgutil

from fastapi import APIRouter

router = APIRouter()
OWN_HEAD: set[str] = set()  # paths whose routes answer HEAD themselves (the others get middleware/head.py's)
for _module in pkgutil.iter_modules(__path__):
    _router = importlib.import_module(f"{__name__}.{_module.name}").router
    OWN_HEAD.update(route.path for route in _router.routes if "HEAD" in getattr(route, "methods", ()))
    router.include_router(_router)
