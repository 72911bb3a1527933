"""The endpoints, one module each with its `router`: thin wrappers that validate, admit (admission.py) and deliver
(delivery.py). Every module of this package is included: adding an endpoint is adding a module here."""

from __future__ import annotations

import importlib
import pkgutil

from fastapi import APIRouter

router = APIRouter()
for _module in pkgutil.iter_modules(__path__):
    router.include_router(importlib.import_module(f"{__name__}.{_module.name}").router)
