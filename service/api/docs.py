"""/docs and /redoc with their assets served by the app itself: they work in an offline cluster (no CDN), and with
API keys on: their pages hold no data and are open, and fetch the OpenAPI document (which needs the key) with the
key they ask for (service/web/docs.js), as the page at / does."""

from __future__ import annotations

import html
from pathlib import Path

import fastapi_offline
from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS = Path(fastapi_offline.__file__).parent / "static"
PREFIX = "/docs-assets"
# Nothing is fetched from outside, by the browser's own rule: ReDoc's sidebar shows a logo from cdn.redoc.ly (which
# then hides itself). Swagger UI and ReDoc inject their styles, and ReDoc runs its search in a blob: worker.
CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; worker-src 'self' blob:; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)
_HEADERS = {"Content-Security-Policy": CSP}

_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<link rel="icon" href="{prefix}/favicon.png">
{css}
</head>
<body>
<form id="key-form" data-openapi="{openapi}" hidden style="font: 15px system-ui; margin: 1em">
  <label>API key <input id="api-key" type="password" autocomplete="off"></label>
  <button type="submit">Use key</button> <span id="key-status"></span>
</form>
<div id="api"></div>
<script src="{prefix}/{bundle}"></script>
<script src="/ui/docs.js"></script>
</body>
</html>
"""


def page(title: str, openapi_url: str, bundle: str, css: str = "") -> str:
    return _PAGE.format(
        title=html.escape(title), prefix=PREFIX, openapi=html.escape(openapi_url), bundle=bundle, css=css
    )


def open_paths() -> frozenset[str]:
    """What /docs and /redoc need before they have a key (auth opens exactly these): their HTML and each asset."""
    return frozenset({"/docs", "/redoc", *(f"{PREFIX}/{file.name}" for file in ASSETS.iterdir() if file.is_file())})


def install(app: FastAPI) -> None:
    app.mount(PREFIX, StaticFiles(directory=ASSETS), name="docs-assets")
    openapi_url = app.openapi_url or "/openapi.json"

    @app.get("/docs", include_in_schema=False)
    def swagger() -> HTMLResponse:
        css = f'<link rel="stylesheet" href="{PREFIX}/swagger-ui.css">'
        return HTMLResponse(
            page(f"{app.title} - Swagger UI", openapi_url, "swagger-ui-bundle.js", css), headers=_HEADERS
        )

    @app.get("/redoc", include_in_schema=False)
    def redoc() -> HTMLResponse:
        return HTMLResponse(page(f"{app.title} - ReDoc", openapi_url, "redoc.standalone.js"), headers=_HEADERS)
