"""The page at / and /docs in a real browser: Debian's headless Chromium (.ci/run installs it), driven through the
DevTools protocol over a websocket, against the real server with API keys on. The page loads and asks for the key,
the charts are the API's numbers (a histogram against the predicted counts, the /stats table, two schemes' per-layer
variances from /diagnose on one log scale), each download and the copied curl command give the API's bytes, /docs
and /redoc ask for the key, and no request leaves the host.

INITSERVE_SCREENSHOT=docs/page.png keeps a screenshot of the page (the README shows it).
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import math
import os
import shlex
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import numpy as np
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
        self.requests: dict[str, str] = {}  # request id -> URL, every request the page made
        self.blocked: set[str] = set()  # the ids of those the browser refused to send (a Content-Security-Policy)
        self.send("Network.enable")
        self.send("Page.enable")
        self.send(  # what the pages' Content-Security-Policy refused, as `URL directive`
            "Page.addScriptToEvaluateOnNewDocument",
            source="window.violations = []; document.addEventListener('securitypolicyviolation',"
            " (e) => violations.push(`${e.blockedURI} ${e.violatedDirective}`))",
        )
        self.send("Browser.setDownloadBehavior", behavior="allow", downloadPath=str(self.downloads))

    def send(self, method: str, **params: Any) -> dict[str, Any]:
        number = next(self.ids)
        self.socket.send(json.dumps({"id": number, "method": method, "params": params}))
        deadline = time.monotonic() + WAIT_SECONDS
        while True:
            message = json.loads(self.socket.recv(timeout=max(deadline - time.monotonic(), 0.1)))
            if message.get("method") == "Network.requestWillBeSent":
                self.requests[message["params"]["requestId"]] = message["params"]["request"]["url"]
            elif message.get("method") == "Network.loadingFailed" and message["params"].get("blockedReason"):
                self.blocked.add(message["params"]["requestId"])
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

    def left_host(self, server: str) -> list[str]:
        """The URLs the browser sent anywhere but `server` (data: and blob: URLs are the page's own memory)."""
        local = (server + "/", "data:", "blob:")
        return [url for id_, url in self.requests.items() if id_ not in self.blocked and not url.startswith(local)]

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


def test_the_page_draws_downloads_and_stays_on_the_host(server, browser, tmp_path):
    auth = {"Authorization": f"Bearer {KEY}"}
    browser.goto(server + "/")
    browser.wait("document.querySelector('#key-status').textContent.includes('API key')", "the key prompt")
    assert browser.count("#histogram rect") == 0  # nothing drawn without the key: the API said 401
    browser.fill("#api-key", KEY)
    browser.click("#key-form button")
    browser.wait("document.body.dataset.ready === 'true'", "the catalogue")

    # A tensor: its histogram against the counts its distribution predicts, and the /stats numbers, are the API's
    browser.fill("#tensor-form [name=shape]", "64,32")
    browser.fill("#tensor-form [name=seed]", "11")
    request = show_tensor(browser)
    assert request == {"shape": [64, 32], "scheme": "kaiming_normal", "dtype": "float32", "seed": 11}
    stats = httpx.post(server + "/stats", json={**request, "bins": 48}, headers=auth).json()
    assert_histogram(browser, "#histogram", stats["histogram"]["counts"], stats["histogram"]["expected"])

    # A large tensor's answer arriving after a later small one's is not drawn over it
    shown = browser.js(
        "(async (form) => { form.shape.value = '1024,1024'; const large = showTensor();"
        " form.shape.value = '64,32'; await Promise.all([large, showTensor()]);"
        " return document.querySelector('#histogram').dataset.shows; })(document.querySelector('#tensor-form'))"
    )
    assert json.loads(shown) == request

    # Every field of the form reaches the request: the scheme, its parameters, the layout, the dtype
    browser.js(
        "(s => { s.value = 'uniform'; s.dispatchEvent(new Event('change')); })"
        "(document.querySelector('#tensor-form select[name=scheme]'))"
    )
    for selector, value in (("[data-param=b]", "0.5"), ("[name=layout]", "torch"), ("[name=dtype]", "float16")):
        browser.fill(f"#tensor-form {selector}", value)
    request = show_tensor(browser)
    assert request == {
        "shape": [64, 32], "scheme": "uniform", "b": 0.5, "layout": "torch", "dtype": "float16", "seed": 11
    }  # fmt: skip
    stats = httpx.post(server + "/stats", json={**request, "bins": 48}, headers=auth).json()
    assert stats["theoretical"]["support"] == [0.0, 0.5]
    assert_histogram(browser, "#histogram", stats["histogram"]["counts"], stats["histogram"]["expected"])
    rows = browser.js(
        "[...document.querySelectorAll('#stats-table tr')].map(tr => [...tr.cells].map(c => c.textContent))"
    )
    theory, tensor = stats["theoretical"], stats["empirical"]
    names = [row[0] for row in rows]
    assert rows[0] == ["", "theory", "tensor"] and names[1:] == ["mean", "variance", "std", "min / max", "KS p-value"]
    shown = [float(cell) for row in rows[1:] for cell in " / ".join(row[1:]).split(" / ") if cell]
    api = [value for key in ("mean", "variance", "std") for value in (theory[key], tensor[key])]
    api += [tensor["min"], tensor["max"], stats["ks"]["pvalue"]]
    assert shown == [pytest.approx(value, rel=1e-4, abs=1e-12) for value in api]

    # Downloads in each format are the API's bytes
    downloads = {}
    for fmt in ("safetensors", "npy", "json"):
        browser.click(f"[data-format={fmt}]")
        downloads[fmt] = browser.downloads / f"weight.{fmt}"
        browser_wait_file(downloads[fmt])
        expected = httpx.post(server + "/init", json={**request, "format": fmt}, headers=auth)
        assert expected.status_code == 200 and downloads[fmt].read_bytes() == expected.content, fmt

    # A refusal is shown as the API words it
    browser.fill("#tensor-form [name=dtype]", "bfloat16")
    browser.click("[data-format=npy]")
    browser.wait("document.querySelector('#tensor-error').textContent.includes('cannot hold bfloat16')", "the 422")
    browser.fill("#tensor-form [name=dtype]", "float16")

    # The copied curl command is the same request: run, it writes the same safetensors bytes
    browser.send(
        "Browser.grantPermissions", origin=server, permissions=["clipboardReadWrite", "clipboardSanitizedWrite"]
    )
    browser.send("Emulation.setFocusEmulationEnabled", enabled=True)  # the clipboard is only a focused page's
    browser.click("#copy-curl")
    copied = browser.wait("navigator.clipboard.readText().catch(() => '')", "the copied curl command")
    assert copied == browser.js("document.querySelector('#curl').textContent")
    words = shlex.split(copied)
    header = "Authorization: Bearer $INITSERVE_API_KEY"  # the key itself stays out of the copied text
    assert words[:8] == ["curl", "-s", "-X", "POST", server + "/init", "-H", header, "-d"]
    assert json.loads(words[8]) == request and words[9:] == ["-o", "weight.safetensors"]
    if shutil.which("curl"):
        run = tmp_path / "curl"
        run.mkdir()
        env = {**os.environ, "INITSERVE_API_KEY": KEY}
        subprocess.run(["bash", "-c", copied], cwd=run, env=env, check=True, timeout=WAIT_SECONDS)
        assert (run / "weight.safetensors").read_bytes() == downloads["safetensors"].read_bytes()

    # Depth diagnostics: two schemes side by side on one log scale, each line the API's numbers per layer
    browser.fill("#diagnose-form [name=depth]", "6")
    browser.fill("#diagnose-form [name=width]", "64")
    browser.fill("#diagnose-form [name=batch]", "32")
    browser.click("#diagnose-form button[type=submit]")
    browser.wait("document.querySelectorAll('#last-b rect').length === 40", "the diagnose charts")
    bodies = json.loads(browser.js("JSON.stringify(diagnoseRequests())"))
    assert [body["init"] for body in bodies] == [
        {"scheme": "xavier_normal"},
        {"scheme": "kaiming_normal", "nonlinearity": "relu"},
    ]
    assert all(body["widths"] == [64] * 7 and body["activation"] == "relu" for body in bodies)
    a, b = (httpx.post(server + "/diagnose", json=body, headers=auth, timeout=60).json()["layers"] for body in bodies)
    assert browser.js("document.querySelector('#legend-a').textContent") == "A: xavier_normal"
    assert browser.js("document.querySelector('#legend-b').textContent") == "B: kaiming_normal"
    for chart, measured, theory in (
        ("#activation-chart", lambda layer: layer["output"]["variance"], "activation_variance"),
        ("#gradient-chart", lambda layer: layer["gradient"]["variance"], "gradient_variance"),
    ):
        series = [[measured(layer) for layer in a], [measured(layer) for layer in b]]
        series += [[layer["theory"][theory] for layer in a], [layer["theory"][theory] for layer in b]]
        assert_log_lines(browser, chart, series)
    # ReLU: Xavier halves the variance per layer, He keeps it: A's last point lies far below B's
    activation = polylines(browser, "#activation-chart")
    assert activation[0][-1][1] - activation[1][-1][1] > 50
    for chart, layers in (("#last-a", a), ("#last-b", b)):
        assert_histogram(browser, chart, layers[-1]["output"]["histogram"]["counts"], None)

    if target := os.environ.get("INITSERVE_SCREENSHOT"):  # the page's defaults: Xavier vs He, 20 ReLU layers
        for selector, value in (("#tensor-form [name=shape]", "256,784"), ("#tensor-form [name=seed]", "7")):
            browser.fill(selector, value)
        for name, value in (("depth", "20"), ("width", "256"), ("batch", "128")):
            browser.fill(f"#diagnose-form [name={name}]", value)
        show_tensor(browser)
        browser.click("#diagnose-form button[type=submit]")
        browser.wait(
            "document.querySelector('#activation-chart polyline').getAttribute('points').split(' ').length === 20",
            "the 20-layer charts",
        )
        height = browser.js("document.documentElement.scrollHeight")
        browser.send("Emulation.setDeviceMetricsOverride", width=1200, height=height, deviceScaleFactor=1, mobile=False)
        shot = browser.send("Page.captureScreenshot", format="png")
        Path(target).write_bytes(base64.b64decode(shot["data"]))

    paths = {urlsplit(url).path for url in browser.requests.values()}
    assert {"/", "/ui/app.js", "/ui/charts.js", "/ui/style.css", "/schemes", "/stats", "/diagnose"} <= paths
    assert browser.js("violations") == []  # the page tried nothing its Content-Security-Policy refuses
    assert browser.left_host(server) == []


def show_tensor(browser: Browser) -> dict[str, Any]:
    """Submit the tensor form and wait until its histogram and table are drawn; returns the request they show."""
    request = browser.js("JSON.stringify(tensorRequest())")
    browser.click("#tensor-form button[type=submit]")
    browser.wait(f"document.querySelector('#histogram').dataset.shows === {json.dumps(request)}", "the histogram")
    return json.loads(request)


def polylines(browser: Browser, chart: str) -> list[list[list[float]]]:
    """Each polyline of an SVG chart as its [x, y] points."""
    return browser.js(
        f"[...document.querySelectorAll('{chart} polyline')]"
        ".map(p => p.getAttribute('points').split(' ').map(xy => xy.split(',').map(Number)))"
    )


def assert_histogram(browser: Browser, chart: str, counts: list[int], expected: list[float] | None) -> None:
    """The bars' heights are `counts` and the line's heights `expected`, on one scale from one baseline."""
    bars = browser.js(
        f"[...document.querySelectorAll('{chart} rect')]"
        ".map(r => [Number(r.getAttribute('y')), Number(r.getAttribute('height'))])"
    )
    assert len(bars) == len(counts)
    baseline = bars[0][0] + bars[0][1]
    scale = sum(height for _, height in bars) / sum(counts)
    assert scale > 0
    for (top, height), count in zip(bars, counts, strict=True):
        assert top + height == pytest.approx(baseline) and height == pytest.approx(scale * count, abs=1e-6)
    lines = polylines(browser, chart)
    if expected is None:
        assert lines == []
        return
    [line] = lines
    assert [baseline - y for _, y in line] == pytest.approx([scale * e for e in expected], abs=1e-6)


def assert_log_lines(browser: Browser, chart: str, series: list[list[float | None]]) -> None:
    """The chart's lines are `series` (measured A and B, then theory A and B), a point per layer with a positive
    value, all on one log-y scale: every y is one linear function of log10(value), every x of the layer."""
    lines = polylines(browser, chart)
    assert len(lines) == len(series)
    xs, layers, ys, logs = [], [], [], []
    for line, values in zip(lines, series, strict=True):
        kept = [(i, v) for i, v in enumerate(values) if v is not None and v > 0]
        assert len(kept) == len(values) and len(line) == len(kept)  # the theory exists for every ReLU layer
        for (x, y), (i, v) in zip(line, kept, strict=True):
            xs.append(x), layers.append(i), ys.append(y), logs.append(math.log10(v))
    for coordinate, of, sign in ((ys, logs, -1), (xs, layers, 1)):
        slope, intercept = np.polyfit(of, coordinate, 1)
        assert sign * slope > 0
        assert np.allclose(np.asarray(coordinate), slope * np.asarray(of) + intercept, rtol=0, atol=1e-6)


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
    assert browser.js("violations") == []
    browser.goto(server + "/redoc")  # the same tab: the key given to /docs is in its session storage
    browser.wait("document.querySelector('#api').textContent.includes('/diagnose')", "ReDoc's operations")
    assert browser.js("document.querySelector('#key-form').hidden")
    # ReDoc's sidebar asks for a logo from its CDN: the Content-Security-Policy refuses it, nothing else
    assert browser.js("violations") == ["https://cdn.redoc.ly/redoc/logo-mini.svg img-src"]
    assert browser.left_host(server) == []
