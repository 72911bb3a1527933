"""A ~1B-parameter transformers checkpoint: initserve through the Hub protocol versus transformers in-process.

    .venv/bin/python -m bench.checkpoint [--model tinyllama-1.1b] [--dtype bfloat16] [--seed 0]

Needs the `hf` extra (transformers, torch). Same config (a catalogue name, service/hub_configs/), same dtype on
both sides, each client in a fresh interpreter (its import time reported apart), files written to a temporary
directory on the same disk:

* transformers: `AutoModelForCausalLM.from_config(config, dtype=...)` (every parameter initialised in Python, in
  process), then `save_pretrained(dir)`;
* initserve: `initserve serve` on loopback (one worker, default settings, kernels compiled before timing), and the
  client's `snapshot_download(repo, local_dir=dir)` with HF_ENDPOINT pointing at it: the same directory, written
  through the Hub protocol; then `from_pretrained(repo)` through the protocol (download into a fresh HF_HOME and
  load), against `from_config` alone.

Reported: wall time of each (timed inside the client, after its imports), the client's peak RSS, the server's
peak RSS increase during the download (kernel VmHWM after a reset, and sampled) for this model and for the tiny
one (server memory does not grow with the model), the 7B figure extrapolated from the measured throughput, and
what bounds the download on one machine: the server alone (a client that costs nothing) and the Hub client alone
(a server that costs nothing: the weights sent with sendfile from a finished download).
Writes bench/results/checkpoint.md and checkpoint.json.
"""

from __future__ import annotations

import argparse
import filecmp
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench._common import machine
from bench.serving import free_port, measured, serve
from service import hub, startup

RESULTS = Path(__file__).with_name("results")
SEVEN_B = "llama-2-7b"

# Each client prints one JSON line: seconds after its imports, import seconds, its peak RSS (MiB).
LOCAL = """
import json, resource, sys, time
started = time.perf_counter()
import torch
from transformers import AutoConfig, AutoModelForCausalLM
imported = time.perf_counter()
config = AutoConfig.for_model(**json.loads(sys.argv[1]))
AutoModelForCausalLM._model_mapping[type(config)]  # transformers imports the modelling code lazily: not timed
imported = time.perf_counter()
model = AutoModelForCausalLM.from_config(config, dtype=getattr(torch, sys.argv[2]))
built = time.perf_counter()
if sys.argv[3]:
    model.save_pretrained(sys.argv[3])
done = time.perf_counter()
print(json.dumps({"import_seconds": imported - started, "from_config_seconds": built - imported,
                  "seconds": done - imported, "rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""
HUB = """
import json, resource, sys, time
started = time.perf_counter()
import torch
from huggingface_hub import snapshot_download
from transformers import AutoConfig, AutoModelForCausalLM
AutoModelForCausalLM._model_mapping[type(AutoConfig.for_model(**json.loads(sys.argv[4])))]  # as in LOCAL
imported = time.perf_counter()
usage = resource.getrusage(resource.RUSAGE_SELF)
cpu_at_import = usage.ru_utime + usage.ru_stime
if sys.argv[2]:
    snapshot_download(sys.argv[1], local_dir=sys.argv[2])
else:
    model = AutoModelForCausalLM.from_pretrained(sys.argv[1], dtype="auto")
    assert str(model.dtype) == "torch." + sys.argv[3], model.dtype
done = time.perf_counter()
usage = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"import_seconds": imported - started, "seconds": done - imported, "rss_mib": usage.ru_maxrss / 1024,
                  "cpu_seconds": usage.ru_utime + usage.ru_stime - cpu_at_import}))
"""
# The server alone: one file read off a raw socket into one reused buffer and dropped, so that the client costs
# next to nothing: how fast the server delivers when the cores are its own.
RAW = """
import json, resource, socket, sys, time
host, port, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
started = time.perf_counter()
with socket.create_connection((host, port)) as sock:
    sock.sendall(f"GET {path} HTTP/1.1\\r\\nHost: {host}\\r\\nConnection: close\\r\\n\\r\\n".encode())
    buffer, received = bytearray(4 << 20), 0
    while n := sock.recv_into(buffer):
        received += n
done = time.perf_counter()
usage = resource.getrusage(resource.RUSAGE_SELF)
cpu = usage.ru_utime + usage.ru_stime
print(json.dumps({"seconds": done - started, "bytes_received": received, "cpu_seconds": cpu}))
"""

# The Hub client alone: a relay on loopback that answers every request as initserve does (it forwards them), except
# GET and HEAD of the weights file, whose bytes it sends from a finished download with sendfile(2) (page cache to
# socket: next to no CPU). The same client, the same protocol and headers, a server that costs nothing: how fast
# the Hub client can write the directory on this machine whatever the server.
RELAY = """
import http.client, http.server, os, socketserver, sys
upstream_host, upstream_port, weights_name, weights_path = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
port = int(sys.argv[5])
size = os.path.getsize(weights_path)

class Relay(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def forward(self, method):
        connection = http.client.HTTPConnection(upstream_host, upstream_port)
        headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
        connection.request(method, self.path, headers=headers)
        return connection, connection.getresponse()

    def answer(self, method):
        weights = self.path.split("?")[0].endswith("/" + weights_name) and "/resolve/" in self.path
        connection, reply = self.forward("HEAD" if weights else method)
        body = b"" if weights or method == "HEAD" else reply.read()
        self.send_response(reply.status)
        for k, v in reply.getheaders():
            if k.lower() not in ("transfer-encoding", "connection", "content-length", "date", "server"):
                self.send_header(k, v)
        length = reply.getheader("content-length") if method == "HEAD" or weights else str(len(body))
        self.send_header("Content-Length", length or "0")
        self.end_headers()
        connection.close()
        if weights and method == "GET" and reply.status == 200:
            assert int(length) == size, (length, size)
            with open(weights_path, "rb") as f:
                sent = 0
                while sent < size:
                    sent += os.sendfile(self.connection.fileno(), f.fileno(), sent, size - sent)
        elif method == "GET":
            self.wfile.write(body)

    def do_GET(self):
        self.answer("GET")

    def do_HEAD(self):
        self.answer("HEAD")

class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True

Server(("127.0.0.1", port), Relay).serve_forever()
"""


def run(code: str, *args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, timeout=1800, check=False
    )
    if result.returncode:
        raise RuntimeError(result.stderr[-3000:])
    return {k: round(v, 2) for k, v in json.loads(result.stdout.strip().splitlines()[-1]).items()}


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process `pid` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def with_cpu(server: Any, action: Any) -> Any:
    """`action()`'s outcome, with the server's CPU seconds during it."""
    before = cpu_seconds(server.process.pid)
    outcome = action()
    outcome["server_cpu_seconds"] = round(cpu_seconds(server.process.pid) - before, 2)
    return outcome


def client_alone(server: Any, repo: str, config: dict[str, Any], weights: str, downloaded: Path, work: Path) -> Any:
    """The Hub client's `snapshot_download` of `repo` through RELAY, which sends the weights from `downloaded`."""
    port = free_port()
    relay = subprocess.Popen(
        [sys.executable, "-c", RELAY, server.host, str(server.port), weights, str(downloaded / weights), str(port)]
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or relay.poll() is not None:
                    raise RuntimeError("the relay did not start") from None
                time.sleep(0.1)
        target = work / "relayed"
        env = hub_env(f"http://127.0.0.1:{port}/hub", work / "h4")
        before = cpu_seconds(relay.pid)
        outcome = run(HUB, repo, str(target), "", json.dumps(config), env=env)
        outcome["relay_cpu_seconds"] = round(cpu_seconds(relay.pid) - before, 2)
        # Byte for byte, a block at a time: reading the files whole would grow this process to their size, and every
        # client started after it would report that as its own peak RSS (Linux carries ru_maxrss across fork and exec).
        files = sorted(p.name for p in downloaded.iterdir() if p.is_file())
        same = all(filecmp.cmp(target / name, downloaded / name, shallow=False) for name in files)
        if not same or sorted(p.name for p in target.iterdir() if p.is_file()) != files:
            raise RuntimeError("the relayed download differs from initserve's")
        shutil.rmtree(target)
        return outcome
    finally:
        relay.kill()
        relay.wait()


def hub_env(endpoint: str, home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    return {**env, "HF_ENDPOINT": endpoint, "HF_HOME": str(home), "HF_HUB_DISABLE_TELEMETRY": "1"}


def size(directory: Path) -> int:
    return sum(p.stat().st_size for p in directory.iterdir() if p.is_file())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="tinyllama-1.1b", choices=sorted(hub.catalogue()))
    parser.add_argument("--dtype", default="bfloat16", choices=("float32", "bfloat16", "float16"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--runs", type=int, default=3, help="whole comparisons, back to back (this VM is noisy)")
    args = parser.parse_args()
    config = hub.catalogue()[args.model]
    repo = f"initserve/{args.model}-seed{args.seed}-{args.dtype}"
    plan = hub.resolve(None, repo, 4096)
    report: dict[str, Any] = {"machine": machine(), "model": args.model, "repo": repo, "dtype": args.dtype}
    report["machine_cores"] = os.cpu_count() or 1
    report["load_average_before"] = round(os.getloadavg()[0], 2)
    report["parameters"] = sum(t.numel for f in plan.files.values() for t in f.tensors)
    with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
        work = Path(tmp)
        # The server runs the image's kernels: built for the best x86-64 level this CPU runs, installed at start.
        best = startup.choose([t.name for t in startup.targets()], startup.host_features())
        kernels = {"INITSERVE_LOG_LEVEL": "warning"}
        if best is not None:
            startup.build(work / "kernels", [best.name])
            kernels.update({"INITSERVE_KERNEL_CACHE": str(work / "kernels"), "NUMBA_CACHE_DIR": str(work / "cache")})
        report["kernels"] = f"the image's, for {best.name}" if best else "compiled for this host at start"
        report["runs"] = []
        for _ in range(args.runs):
            (work / "run").mkdir()
            report["runs"].append(comparison(config, repo, plan, args.dtype, kernels, work / "run"))
            shutil.rmtree(work / "run")  # the disk holds one run's files at a time
    report["load_average_after"] = round(os.getloadavg()[0], 2)
    seven = hub.resolve(None, f"initserve/{SEVEN_B}-seed0-{args.dtype}", 4096)
    seven_bytes = sum(f.length for f in seven.files.values())
    total = sum(f.length for f in plan.files.values())
    report["seven_b"] = {
        "repo": f"initserve/{SEVEN_B}-seed0-{args.dtype}",
        "bytes": seven_bytes,
        "initserve_seconds_extrapolated": [
            round(r["initserve_download"]["seconds"] * seven_bytes / total, 1) for r in report["runs"]
        ],
        "transformers_seconds_extrapolated": [
            round(r["transformers_save"]["seconds"] * seven_bytes / total, 1) for r in report["runs"]
        ],
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "checkpoint.json").write_text(json.dumps(report, indent=2) + "\n")
    (RESULTS / "checkpoint.md").write_text(markdown(report))
    print(markdown(report))
    return 0


def comparison(
    config: dict[str, Any], repo: str, plan: Any, dtype: str, kernels: dict[str, str], work: Path
) -> dict[str, Any]:
    """One whole comparison: transformers in-process, then initserve (a fresh server) through the Hub protocol, the
    server alone and the Hub client alone; each ratio against this run's transformers time."""
    report: dict[str, Any] = {}
    local = work / "local"
    report["transformers_save"] = run(LOCAL, json.dumps(config), dtype, str(local))
    report["transformers_save"]["bytes"] = size(local)
    shutil.rmtree(local)
    report["transformers_from_config"] = run(LOCAL, json.dumps(config), dtype, "")
    with serve(env=kernels) as server:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and server.get("/readyz")[0] != 200:
            time.sleep(0.2)
        endpoint = f"{server.url}/hub"
        tiny_config = json.dumps(hub.catalogue()["tiny-llama"])
        # Warm-up: the other rngs' kernels and the Python paths, on the tiny model.
        run(HUB, "initserve/tiny-llama-seed0", str(work / "warm"), "", tiny_config, env=hub_env(endpoint, work / "h0"))
        tiny = measured(
            server,
            lambda: run(
                HUB,
                "initserve/tiny-llama-seed1",
                str(work / "tiny"),
                "",
                tiny_config,
                env=hub_env(endpoint, work / "h1"),
            ),
        )
        downloaded = work / "hub"
        served = measured(
            server,
            lambda: with_cpu(
                server,
                lambda: run(HUB, repo, str(downloaded), "", json.dumps(config), env=hub_env(endpoint, work / "h2")),
            ),
        )
        weights = max(plan.files, key=lambda name: plan.files[name].length)
        path = f"/hub/{repo}/resolve/main/{weights}"
        report["server_alone"] = with_cpu(server, lambda: run(RAW, server.host, str(server.port), path))
        report["server_alone"]["bytes"] = plan.files[weights].length
        report["initserve_download"] = {**served.pop("outcome"), "bytes": size(downloaded), "server": served}
        report["client_alone"] = client_alone(server, repo, config, weights, downloaded, work)
        report["server_tiny"] = {k: v for k, v in tiny.items() if k != "outcome"}
        shutil.rmtree(downloaded)
        loaded = measured(
            server, lambda: run(HUB, repo, "", dtype, json.dumps(config), env=hub_env(endpoint, work / "h3"))
        )
        report["initserve_from_pretrained"] = {**loaded.pop("outcome"), "server": loaded}
    save, download = report["transformers_save"]["seconds"], report["initserve_download"]["seconds"]
    # On one machine the server and the Hub client share its cores: the download cannot take less than their CPU
    # seconds over the cores, nor less than the server alone takes with the cores to itself. (The Hub client alone is
    # a reference, not a bound: measured after the download, while the kernel still writes its 2.2 GB back to disk, it
    # is as noisy as the rest.)
    down, alone = report["initserve_download"], report["client_alone"]["seconds"]
    cores = os.cpu_count() or 1
    floor = max((down["server_cpu_seconds"] + down["cpu_seconds"]) / cores, report["server_alone"]["seconds"])
    report["download_floor_seconds"] = round(floor, 2)
    report["speedup_directory_bound"] = round(save / floor, 2)
    report["speedup_server_alone"] = round(save / report["server_alone"]["seconds"], 2)
    report["speedup_client_alone"] = round(save / alone, 2)
    report["speedup_directory"] = round(save / download, 2)
    report["download_over_client_alone"] = round(download / alone, 2)
    report["speedup_model"] = round(
        report["transformers_from_config"]["seconds"] / report["initserve_from_pretrained"]["seconds"], 2
    )
    return report


def span(values: list[float], unit: str = "") -> str:
    """`a` or `a to b` (smallest to largest)."""
    low, high = min(values), max(values)
    return f"{low}{unit}" if low == high else f"{low}{unit} to {high}{unit}"


def markdown(r: dict[str, Any]) -> str:
    runs = r["runs"]

    def row(what: str, cell: Any) -> str:
        return f"| {what} | " + " | ".join(cell(x) for x in runs) + " |"

    gb = runs[0]["initserve_download"]["bytes"] / 1e9
    header = "| | " + " | ".join(f"run {i + 1}" for i in range(len(runs))) + " |"
    rows = [
        header,
        "|---|" + "---|" * len(runs),
        row(
            f"transformers `from_config` + `save_pretrained` ({gb:.2f} GB)",
            lambda x: f"{x['transformers_save']['seconds']} s",
        ),
        row(
            "initserve `snapshot_download` through HF_ENDPOINT",
            lambda x: f"{x['initserve_download']['seconds']} s: **{x['speedup_directory']}x**",
        ),
        row(
            "the Hub client alone (the weights from a server that costs nothing)",
            lambda x: f"{x['client_alone']['seconds']} s: {x['speedup_client_alone']}x",
        ),
        row(
            "the server alone (the weights read off a raw socket)",
            lambda x: f"{x['server_alone']['seconds']} s: {x['speedup_server_alone']}x",
        ),
        row(
            "bound: max((server + client CPU) / cores, server alone)",
            lambda x: f"{x['download_floor_seconds']} s: {x['speedup_directory_bound']}x",
        ),
        row("initserve's download over the Hub client alone", lambda x: f"{x['download_over_client_alone']}x"),
        row(
            "transformers `from_config` (the model in memory)",
            lambda x: f"{x['transformers_from_config']['seconds']} s",
        ),
        row(
            "initserve `from_pretrained` through HF_ENDPOINT (download + load)",
            lambda x: f"{x['initserve_from_pretrained']['seconds']} s: **{x['speedup_model']}x**",
        ),
        row(
            "server / Hub client CPU seconds during the download",
            lambda x: f"{x['initserve_download']['server_cpu_seconds']} / {x['initserve_download']['cpu_seconds']}",
        ),
        row(
            "peak RSS: transformers / Hub client / server increase",
            lambda x: (
                f"{x['transformers_save']['rss_mib']:.0f} / {x['initserve_download']['rss_mib']:.0f} / "
                f"+{x['initserve_download']['server']['peak_increase_mib']} MiB"
            ),
        ),
    ]
    table = "\n".join(rows)
    seven = r["seven_b"]
    relay = span([x["client_alone"]["relay_cpu_seconds"] for x in runs])
    tiny_rss = span([x["server_tiny"]["peak_increase_mib"] for x in runs])
    model_rss = span([x["initserve_download"]["server"]["peak_increase_mib"] for x in runs])
    client_seconds = span([x["client_alone"]["seconds"] for x in runs], " s")
    client_cpu = span([x["client_alone"]["cpu_seconds"] for x in runs], " CPU s")
    server_seconds = span([x["server_alone"]["seconds"] for x in runs], " s")
    over = span([x["download_over_client_alone"] for x in runs], "x")
    seven_ours = span(seven["initserve_seconds_extrapolated"], " s")
    seven_theirs = span(seven["transformers_seconds_extrapolated"], " s")
    return f"""# A {r["parameters"] / 1e9:.2f}B-parameter checkpoint: initserve (Hub protocol) vs transformers

`python -m bench.checkpoint --model {r["model"]} --dtype {r["dtype"]} --runs {len(runs)}` on {r["machine"]}; repo
`{r["repo"]}`; server kernels: {r["kernels"]}; 1-minute load average {r["load_average_before"]} before,
{r["load_average_after"]} after. {len(runs)} whole comparisons back to back, each ratio against its own run's
transformers time (this VM's speed varies between runs). Times are measured in each client after its imports (a fresh
interpreter each); each run starts a fresh server.

{table}

**Speed-up of the directory on disk: {span([x["speedup_directory"] for x in runs], "x")}.** Of the model in memory
(`from_pretrained` against `from_config`): {span([x["speedup_model"] for x in runs], "x")}.

Server memory does not follow the model's size: its peak RSS rose {tiny_rss} MiB for the tiny model and {model_rss} MiB
for this one (a stream holds one chunk of one tensor at a time).

**What bounds the download on this machine.** The server and the Hub client share its {r["machine_cores"]} cores,
so the download cannot take less than their CPU seconds over the cores, nor less than the server alone takes.
The Hub client's own time is most of it: fed the same files by a relay that forwards every request to initserve but
sends the weights' bytes from the finished download with sendfile ({relay} relay CPU seconds), a server that costs
next to nothing, huggingface_hub's client writes the directory in {client_seconds} ({client_cpu}), about the time it
takes from initserve (initserve's download over it: {over}). On this machine the Hub client, not the server, sets
the download's time. The server alone, its file read off a raw socket
by a client that costs next to nothing, delivers it in {server_seconds}:
{span([x["speedup_server_alone"] for x in runs], "x")} transformers' time, what a client on another machine sees.

7B by extrapolation from these throughputs (`{seven["repo"]}`, {seven["bytes"] / 1e9:.1f} GB): initserve
{seven_ours}, transformers {seven_theirs} (whose process also holds the whole model in memory).
"""


if __name__ == "__main__":
    sys.exit(main())
