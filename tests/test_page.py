"""The page at / and /docs in a real browser: Debian's headless Chromium (.ci/run installs it), driven through the
DevTools protocol over a websocket, against the real server with API keys on. The page loads and asks for the key,
a form draws the charts, a download is the API's bytes, and no request leaves the host.

INITSERVE_SCREENSHOT=docs/page.png keeps a screenshot of the page (the README shows it).
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.sync.client import connect

from tests.server import serve

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
KEY = "page-test-key"
WAIT_SECONDS = 60.0

if CHROMIUM is None and os.environ.get("CI"):
    raise RuntimeError("CI runs the browser test: .ci/run installs Debian's chromium")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium (apt-get install chromium)")


class Browser:
    """Headless Chromium and a DevTools session on its one page; every host but loopback resolves to nothing, so
    that even a page that tried could not reach out (the network log shows whether it tried)."""

    def __init__(self, profile: Path) -> None:
        self.downloads = profile / "downloads"
        self.process = subprocess.Popen(
            [
                CHROMIUM,
                "--headless",
                "--no-sandbox",  # CI runs as root
                "--disable-gpu",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-default-apps",
                "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
                "--remote-debugging-port=0",
                "--remote-allow-origins=*",
                f"--user-data-dir={profile}",
                "--window-size=1200,900",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        active = profile / "DevToolsActivePort"
        deadline = time.monotonic() + WAIT_SECONDS
        while not (active.exists() and len(active.read_text().split()) == 2):
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError("chromium did not start its DevTools endpoint")
            time.sleep(0.1)
        port = active.read_text().split()[0]
        targets = httpx.get(f"http://127.0.0.1:{port}/json/list", timeout=10).json()
        page = next(t for t in targets if t["type"] == "page")
        self.stack = contextlib.ExitStack()
        self.socket = self.stack.enter_context(connect(page["webSocketDebuggerUrl"], max_size=None, open_timeout=10))
        self.ids = itertools.count(1)
        self.requests: list[str] = []
        self.send("Network.enable")
        self.send("Page.enable")
        self.send("Browser.setDownloadBehavior", behavior="allow", downloadPath=str(self.downloads))

    def send(self, method: str, **params: Any) -> dict[str, Any]:
        number = next(self.ids)
        self.socket.send(json.dumps({"id": number, "method": method, "params": params}))
        deadline = time.monotonic() + WAIT_SECONDS
        while True:
            message = json.loads(self.socket.recv(timeout=max(deadline - time.monotonic(), 0.1)))
            if message.get("method") == "Network.requestWillBeSent":
                self.requests.append(message["params"]["request"]["url"])
            if message.get("id") == number:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message["result"]

    def js(self, expression: str) -> Any:
        result = self.send("Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait(self, expression: str, what: str) -> Any:
        deadline = time.monotonic() + WAIT_SECONDS
        while time.monotonic() < deadline:
            if value := self.js(expression):
                return value
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what}: {expression}")

    def goto(self, url: str) -> None:
        self.send("Page.navigate", url=url)
        self.wait("document.readyState === 'complete'", f"{url} to load")

    def fill(self, selector: str, value: str) -> None:
        self.js(f"document.querySelector({json.dumps(selector)}).value = {json.dumps(value)}")

    def click(self, selector: str) -> None:
        self.js(f"document.querySelector({json.dumps(selector)}).click()")

    def count(self, selector: str) -> int:
        return self.js(f"document.querySelectorAll({json.dumps(selector)}).length")

    def close(self) -> None:
        self.stack.close()
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@pytest.fixture(scope="module")
def server():
    with serve({"INITSERVE_API_KEYS": KEY}) as (url, _):
        yield url


@pytest.fixture
def browser(tmp_path):
    browser = Browser(tmp_path)
    yield browser
    browser.close()


def test_the_page_draws_downloads_and_stays_on_the_host(server, browser):
    browser.goto(server + "/")
    browser.wait("document.querySelector('#key-status').textContent.includes('API key')", "the key prompt")
    browser.fill("#api-key", KEY)
    browser.click("#key-form button")
    browser.wait("document.body.dataset.ready === 'true'", "the catalogue")

    browser.fill("#tensor-form [name=shape]", "64,32")
    browser.fill("#tensor-form [name=seed]", "11")
    browser.click("#tensor-form button[type=submit]")
    browser.wait("document.querySelector('#curl').textContent.includes('[64,32]')", "the curl line")
    browser.wait("document.querySelectorAll('#histogram rect').length === 48", "the histogram")
    assert browser.count("#histogram polyline.theory") == 1
    assert browser.js("document.querySelector('#stats-table').textContent").startswith("theorytensormean")

    request = browser.js("JSON.stringify(tensorRequest())")
    assert json.loads(request) == {"shape": [64, 32], "scheme": "kaiming_normal", "dtype": "float32", "seed": 11}
    for fmt, name in (("npy", "weight.npy"), ("json", "weight.json")):
        browser.click(f"[data-format={fmt}]")
        saved = browser.downloads / name
        browser_wait_file(saved)
        expected = httpx.post(
            server + "/init", json={**json.loads(request), "format": fmt}, headers={"Authorization": f"Bearer {KEY}"}
        )
        assert expected.status_code == 200 and saved.read_bytes() == expected.content

    browser.fill("#diagnose-form [name=depth]", "6")
    browser.fill("#diagnose-form [name=width]", "64")
    browser.fill("#diagnose-form [name=batch]", "32")
    browser.click("#diagnose-form button[type=submit]")
    browser.wait("document.querySelectorAll('#last-b rect').length === 40", "the diagnose charts")
    for chart in ("#activation-chart", "#gradient-chart"):
        points = browser.js(
            f"[...document.querySelectorAll('{chart} polyline')].map(p => p.getAttribute('points').split(' ').length)"
        )
        assert points == [6, 6, 6, 6], chart  # A and B, measured and theory, one point per layer

    if target := os.environ.get("INITSERVE_SCREENSHOT"):  # the page's defaults: Xavier vs He, 20 ReLU layers
        for selector, value in (("#tensor-form [name=shape]", "256,784"), ("#tensor-form [name=seed]", "7")):
            browser.fill(selector, value)
        for name, value in (("depth", "20"), ("width", "256"), ("batch", "128")):
            browser.fill(f"#diagnose-form [name={name}]", value)
        browser.click("#tensor-form button[type=submit]")
        browser.wait("document.querySelector('#curl').textContent.includes('[256,784]')", "the default tensor")
        browser.click("#diagnose-form button[type=submit]")
        browser.wait(
            "document.querySelector('#activation-chart polyline').getAttribute('points').split(' ').length === 20",
            "the 20-layer charts",
        )
        height = browser.js("document.documentElement.scrollHeight")
        browser.send("Emulation.setDeviceMetricsOverride", width=1200, height=height, deviceScaleFactor=1, mobile=False)
        shot = browser.send("Page.captureScreenshot", format="png")
        Path(target).write_bytes(base64.b64decode(shot["data"]))

    assert browser.requests, "the network log recorded nothing"
    outside = [url for url in browser.requests if not url.startswith((server + "/", "data:", "blob:"))]
    assert outside == []


def browser_wait_file(path: Path) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while not path.exists() or any(path.parent.glob("*.crdownload")):
        assert time.monotonic() < deadline, f"no download {path.name}"
        time.sleep(0.1)


def test_docs_ask_for_the_key_and_then_work(server, browser):
    browser.goto(server + "/docs")
    browser.wait("!document.querySelector('#key-form').hidden", "the key prompt")
    browser.fill("#api-key", KEY)
    browser.click("#key-form button")
    browser.wait("document.querySelectorAll('.opblock').length > 5", "Swagger UI's operations")
    assert browser.js("document.querySelector('#key-form').hidden")
    # "Try it out" sends the key: Swagger UI's request interceptor adds it
    intercepted = browser.js("ui.getConfigs().requestInterceptor({headers: {}}).headers.Authorization")
    assert intercepted == f"Bearer {KEY}"
    outside = [url for url in browser.requests if not url.startswith((server + "/", "data:", "blob:"))]
    assert outside == []
