"""The page at /: static HTML, CSS and JavaScript (service/web/) that draws its own SVG charts from the API's
answers. Nothing is fetched from anywhere but this server, and nothing needs building."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

WEB = Path(__file__).resolve().parent.parent / "web"
PREFIX = "/ui"
# The browser itself refuses to fetch from anywhere but this server: the page's one image is its data: icon, and
# downloads are blob: URLs of the API's answers.
CSP = "default-src 'self'; img-src 'self' data: blob:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"


def open_paths() -> frozenset[str]:
    """What the page needs before it has a key (auth opens exactly these): its HTML and each of its files."""
    return frozenset({"/", *(f"{PREFIX}/{file.name}" for file in WEB.iterdir() if file.is_file())})


def install(app: FastAPI) -> None:
    app.mount(PREFIX, StaticFiles(directory=WEB), name="ui")

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(WEB / "index.html", media_type="text/html", headers={"Content-Security-Policy": CSP})
