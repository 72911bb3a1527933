"""With API keys on, the real server opens exactly the static shells and assets of the page at / and of /docs and
/redoc, and nothing else: every API route, the OpenAPI document, and every path that only looks like a static one
(dot segments, doubled or encoded slashes, trailing slashes, case, another method) answers 401.

Requests are written by hand on a socket, so that no client normalises the path before the server sees it.
"""

from __future__ import annotations

import socket
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from service.api import docs, page
from tests.server import serve

KEY = "auth-paths-key"
SHELLS = ("/", "/docs", "/redoc")
ASSETS = tuple(
    f"{prefix}/{file.name}"
    for prefix, directory in ((page.PREFIX, page.WEB), (docs.PREFIX, docs.ASSETS))
    for file in sorted(Path(directory).iterdir())
)
LOOKALIKES = (
    "/ui/../init",
    "/ui/..%2Finit",
    "/ui%2F..%2Finit",
    "/ui/%2e%2e/init",
    "/static/../init",
    "/static%2F..%2Finit",
    "//init",
    "//docs",
    "//ui/app.js",
    "/ui//app.js",
    "/./ui/app.js",
    "/ui/./app.js",
    "/ui/app.js/",
    "/ui/app.js%2F",
    "/ui/",
    "/ui",
    "/uifoo",
    "/ui/nothing.js",
    "/docs/",
    "/docs//",
    "/docs/x",
    "/docs/../init",
    "/redoc/",
    "/DOCS",
    "/Docs",
    "/docs;x",
    "/docs%20",
    "/docs-assets/",
    "/docs-assets",
    "/docs-assets/../openapi.json",
    "/docs-assets/..%2F..%2F__init__.py",
    "/%2F",
    "/index.html",
    "/openapi.json",
)


def status(base: str, method: str, target: str, key: str | None = None) -> int:
    """The status line's code for one request sent as written (HTTP/1.1, no body)."""
    port = urlsplit(base).port
    lines = [f"{method} {target} HTTP/1.1", "Host: 127.0.0.1", "Connection: close", "Content-Length: 0"]
    if key:
        lines.append(f"Authorization: Bearer {key}")
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        head = b""
        while b"\r\n" not in head:
            chunk = sock.recv(4096)
            assert chunk, f"{method} {target}: connection closed before a status line"
            head += chunk
    return int(head.split(b" ", 2)[1])


@pytest.fixture(scope="module")
def server():
    with serve({"INITSERVE_API_KEYS": KEY}) as (url, _):
        yield url


def test_the_shells_and_their_assets_are_open(server):
    assert {"/ui/app.js", "/ui/index.html", "/docs-assets/swagger-ui-bundle.js"} <= set(ASSETS)
    for path in (*SHELLS, *ASSETS, "/ui/app.js?v=1"):
        for method in ("GET", "HEAD"):
            assert status(server, method, path) == 200, (method, path)


def test_every_api_route_needs_the_key(server):
    document = httpx.get(server + "/openapi.json", headers={"Authorization": f"Bearer {KEY}"}, timeout=30).json()
    guarded = {
        (method.upper(), path)
        for path, operations in document["paths"].items()
        if path not in ("/healthz", "/readyz", "/metrics")
        for method in operations
    }
    assert {("POST", "/init"), ("GET", "/init"), ("POST", "/stats"), ("POST", "/diagnose")} <= guarded
    guarded |= {("HEAD", path) for method, path in guarded if method == "GET"}
    for method, path in sorted(guarded):
        assert status(server, method, path) == 401, (method, path)
        assert status(server, method, path, "wrong-key") == 401, (method, path)
        assert status(server, method, path + "?shape=2&scheme=zeros") == 401, (method, path)
        assert status(server, "OPTIONS", path) == 405, path  # open for CORS preflights, but it reaches no handler
    port = urlsplit(server).port
    assert status(server, "GET", f"http://127.0.0.1:{port}/schemes") == 401  # absolute form
    assert status(server, "GET", "/schemes", KEY) == 200


def test_paths_that_only_look_static_need_the_key(server):
    for path in LOOKALIKES:
        for method in ("GET", "HEAD"):
            assert status(server, method, path) == 401, (method, path)


def test_only_get_and_head_open_a_static_path(server):
    for path in ("/", "/docs", "/redoc", "/ui/app.js", "/docs-assets/swagger-ui.css"):
        for method in ("POST", "PUT", "PATCH", "DELETE"):
            assert status(server, method, path) == 401, (method, path)
