"""Load test: many concurrent clients against the real server over loopback, for a bounded time.

    /tmp/venv/bin/python -m bench.load [--seconds 60] [--concurrency 64]
    /tmp/venv/bin/python -m bench.load --seconds 10 --only stats_medium --set MALLOC_ARENA_MAX=2   # to attribute

Starts `initserve serve` (the production command, bench/serving.py) with the settings in SETTINGS, warms it up
(one small request of every scheme, format and endpoint in the mix, so numba's compilation is done before any
measurement), reads its idle RSS and resets its peak (clear_refs), then runs a closed loop (bench/loadgen.py):
`--concurrency` keep-alive connections, one request in flight on each, for `--seconds`, each request drawn from a
weighted mix (`kinds`): cache hits and misses, JSON, orthogonal, a tensor just under the streaming threshold,
streamed medium and near-limit tensors, near-limit JSON, /stats, GET with If-None-Match, a model recipe, and
bad requests that must get their 4xx. Seeds differ per request, so almost everything is really generated.

Why these settings: one worker, so the process whose memory is read is the one serving everything; a 256 MiB
memory budget (not the default 1 GiB), which 64 clients asking for streamed and near-limit tensors at once
oversubscribe many times, so the budget is what bounds memory and its back-pressure (503 + Retry-After) is
exercised; 2^25 elements as the largest tensor (128 MiB float32, 2^28 by default), so that a near-limit
request (~115 MiB, streamed) takes a fraction of a second alone and dozens complete within a run; a 32 MiB response
cache (256 MiB by default), as the cache is memory outside the budget that the RSS target nevertheless counts;
log level warning, so the log holds only what went wrong. The other settings are the defaults, stated because
request sizes are derived from them.

`--only` / `--exclude` run part of the mix and `--set NAME=VALUE` adds to the server's environment: to find
which class a result comes from, or to try a fix (e.g. a malloc setting) without editing anything.

Measured and judged:

* errors (target 0): any 5xx other than 503, a 503 without Retry-After or on a request that never reaches the
  budget, any other status than the one expected for the request, a connection failure or timeout, a body whose
  byte count differs from its Content-Length. 503 with Retry-After is the budget's documented answer to "busy":
  counted and reported apart, not an error;
* the server's peak RSS during the run above its idle RSS (kernel VmHWM after clear_refs, cross-checked by
  sampling VmRSS every 10 ms), against the memory budget (target: within it);
* health afterwards: /healthz answers 200, the budget is all released (/metrics initserve_inflight_bytes 0),
  and the server logged no error or traceback;
* per request class: count, statuses, p50/p99/max latency (from sending the request to its last byte); overall
  requests/s and bytes/s. The machine may be busy with other work: speed is reported, not judged.

Writes bench/results/load.md and load.json; exits 1 when a target fails.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import re
import shlex
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from bench import loadgen
from bench._common import machine
from bench.serving import Server, measured, serve

RESULTS = Path(__file__).parent / "results"
MIB = 1 << 20
BUDGET_BYTES = 256 * MIB
MAX_ELEMENTS = 1 << 25
MAX_JSON_ELEMENTS = 1 << 22  # the default, stated so that the near-limit JSON request is sized from it
STREAM_THRESHOLD_BYTES = 8 * MIB  # the default, ditto for the request just under it
CACHE_BYTES = 32 * MIB
SETTINGS = {
    "INITSERVE_WORKERS": "1",
    "INITSERVE_MEMORY_BUDGET_BYTES": str(BUDGET_BYTES),
    "INITSERVE_BUDGET_WAIT_SECONDS": "2",
    "INITSERVE_MAX_ELEMENTS": str(MAX_ELEMENTS),
    "INITSERVE_MAX_JSON_ELEMENTS": str(MAX_JSON_ELEMENTS),
    "INITSERVE_STREAM_THRESHOLD_BYTES": str(STREAM_THRESHOLD_BYTES),
    "INITSERVE_CACHE_BYTES": str(CACHE_BYTES),
    "INITSERVE_LOG_LEVEL": "warning",
}
# Near-limit requests ask for this fraction of the limit: close to it, in a shape a real layer could have.
NEAR = 0.9
# Small unseeded requests take their turn through these, so the mix exercises several kernels, not one.
SCHEMES = ("kaiming_normal", "xavier_uniform", "trunc_normal", "he_normal", "lecun_uniform", "uniform", "normal")
DTYPES = ("float32", "bfloat16")
SEED_BASE = 1_000_000  # per-request seeds: far from the few the cached and 304 classes reuse
HIT_SEEDS = (1, 2, 3, 4)
ETAG_SEED = 7
RECIPE = {"framework": "torch", "layers": ["linear(784, 256)", "relu", "linear(256, 10)"]}


@dataclass(frozen=True)
class Kind:
    """A class of request in the mix: how often it is drawn, what it asks, and what the right answer is."""

    name: str
    weight: int
    request: str  # for the report
    expected: frozenset[int]
    generates: bool  # it may wait for the memory budget, so 503 + Retry-After is a right answer too
    build: Callable[[int], bytes]  # per-request number -> the raw request


def near_shape(limit: int) -> list[int]:
    elements = int(limit * NEAR)
    rows = math.isqrt(elements)
    return [rows, elements // rows]


def kinds(host: str, etag: str) -> list[Kind]:
    def init(body: dict[str, Any], headers: dict[str, str] | None = None) -> bytes:
        return loadgen.post("/init", orjson.dumps(body), host, headers)

    def seed(i: int) -> int:
        return SEED_BASE + i

    near, near_json = near_shape(MAX_ELEMENTS), near_shape(MAX_JSON_ELEMENTS)
    # The largest float32 tensor still answered from one buffer (its safetensors header is well under 1 KiB).
    buffered = [2048, (STREAM_THRESHOLD_BYTES - 1024) // 4 // 2048]
    ok, busy = frozenset({200}), True
    return [
        Kind(
            "small_hit",
            16,
            f"POST /init [256, 784] kaiming_normal, seed one of {list(HIT_SEEDS)} (cache hits)",
            ok,
            busy,  # a hit never waits, but the first request of each seed is a miss
            lambda i: init({"shape": [256, 784], "scheme": "kaiming_normal", "seed": HIT_SEEDS[i % len(HIT_SEEDS)]}),
        ),
        Kind(
            "small_miss",
            14,
            "POST /init [256, 784] unseeded, schemes in turn",
            ok,
            busy,
            lambda i: init({"shape": [256, 784], "scheme": SCHEMES[i % len(SCHEMES)]}),
        ),
        Kind(
            "json_small",
            10,
            "POST /init [64, 64] xavier_uniform, format json",
            ok,
            busy,
            lambda i: init({"shape": [64, 64], "scheme": "xavier_uniform", "seed": seed(i), "format": "json"}),
        ),
        Kind(
            "orthogonal",
            3,
            "POST /init [256, 256] orthogonal",
            ok,
            busy,
            lambda i: init({"shape": [256, 256], "scheme": "orthogonal", "seed": seed(i)}),
        ),
        Kind(
            "buffered_8mib",
            3,
            f"POST /init {buffered} kaiming_uniform (just under the streaming threshold; cached)",
            ok,
            busy,
            lambda i: init({"shape": buffered, "scheme": "kaiming_uniform", "seed": seed(i)}),
        ),
        Kind(
            "medium_stream",
            3,
            "POST /init [4096, 4096] kaiming_normal, float32 or bfloat16 (streamed)",
            ok,
            busy,
            lambda i: init(
                {"shape": [4096, 4096], "scheme": "kaiming_normal", "seed": seed(i), "dtype": DTYPES[i % len(DTYPES)]}
            ),
        ),
        Kind(
            "near_limit",
            1,
            f"POST /init {near} trunc_normal or kaiming_uniform ({NEAR:.0%} of max_elements, streamed)",
            ok,
            busy,
            lambda i: init({"shape": near, "scheme": ("trunc_normal", "kaiming_uniform")[i % 2], "seed": seed(i)}),
        ),
        Kind(
            "json_near_limit",
            1,
            f"POST /init {near_json} he_uniform, format json ({NEAR:.0%} of max_json_elements)",
            ok,
            busy,
            lambda i: init({"shape": near_json, "scheme": "he_uniform", "seed": seed(i), "format": "json"}),
        ),
        Kind(
            "stats_medium",
            2,
            "POST /stats [4096, 4096] kaiming_normal",
            ok,
            busy,
            lambda i: loadgen.post(
                "/stats", orjson.dumps({"shape": [4096, 4096], "scheme": "kaiming_normal", "seed": seed(i)}), host
            ),
        ),
        Kind(
            "get_304",
            8,
            f"GET /init?shape=256,784&scheme=kaiming_normal&seed={ETAG_SEED} with If-None-Match",
            frozenset({304}),
            False,
            lambda i: loadgen.get(_get_path(), host, {"If-None-Match": etag}),
        ),
        Kind(
            "model_recipe",
            3,
            "POST /init torch recipe linear(784, 256), relu, linear(256, 10) (4 tensors)",
            ok,
            busy,
            lambda i: init({"seed": seed(i), "model": RECIPE}),
        ),
        Kind(
            "bad_json",
            1,
            "POST /init with a truncated JSON body",
            frozenset({422}),
            False,
            lambda i: loadgen.post("/init", b'{"shape": [256, 784], "scheme": ', host),
        ),
        Kind(
            "bad_scheme",
            1,
            "POST /init scheme kaiming_gaussian (unknown)",
            frozenset({422}),
            False,
            lambda i: init({"shape": [16, 16], "scheme": "kaiming_gaussian", "seed": seed(i)}),
        ),
        Kind(
            "oversize",
            1,
            f"POST /init [4, {MAX_ELEMENTS // 2}] (2 x max_elements)",
            frozenset({413}),
            False,
            lambda i: init({"shape": [4, MAX_ELEMENTS // 2], "scheme": "normal", "seed": seed(i)}),
        ),
    ]


def _get_path() -> str:
    return f"/init?shape=256,784&scheme=kaiming_normal&seed={ETAG_SEED}"


def warm_up(server: Server) -> str:
    """Compile every kernel and touch every code path of the mix with small requests, before the idle RSS is read
    (a large one would leave its buffers in the baseline); returns the ETag the 304 class sends."""
    host = f"{server.host}:{server.port}"

    def small(body: dict[str, Any]) -> bytes:
        return loadgen.post("/init", orjson.dumps({"shape": [64, 64], "seed": 3, **body}), host)

    schemes = {*SCHEMES, "kaiming_uniform", "he_uniform", "orthogonal"}
    requests = [small({"scheme": scheme}) for scheme in sorted(schemes)]
    requests += [
        small({"scheme": "kaiming_normal", "dtype": "bfloat16"}),
        small({"scheme": "he_uniform", "format": "json"}),
        loadgen.post("/stats", orjson.dumps({"shape": [64, 64], "scheme": "kaiming_normal", "seed": 3}), host),
        loadgen.post("/init", orjson.dumps({"seed": 3, "model": RECIPE}), host),
        loadgen.get(_get_path(), host),
    ]
    start = time.perf_counter()
    replies = loadgen.fetch(server.host, server.port, requests, timeout=300)
    bad = [reply.status for reply in replies if reply.status != 200]
    if bad:
        raise RuntimeError(f"warm-up requests failed: {bad}")
    print(f"warm-up: {len(requests)} requests in {time.perf_counter() - start:.1f} s", flush=True)
    return replies[-1].headers["etag"]


class Judge:
    """The loadgen check: the expected status of each class, 503 + Retry-After where the budget may say busy.
    Also counts the cache hits it sees, to show how many 'small_hit' requests really were."""

    def __init__(self, mix: list[Kind]) -> None:
        self.kinds = {kind.name: kind for kind in mix}
        self.cache_hits: dict[str, int] = {}

    def __call__(self, name: str, reply: loadgen.Reply) -> str | None:
        kind = self.kinds[name]
        if reply.headers.get("x-initserve-cache") == "hit":
            self.cache_hits[name] = self.cache_hits.get(name, 0) + 1
        if reply.status in kind.expected:
            return None
        if reply.status == 503 and kind.generates:
            return None if reply.headers.get("retry-after", "").isdigit() else "503 without Retry-After"
        return f"unexpected status {reply.status}"


def load(server: Server, mix: list[Kind], concurrency: int, seconds: float, seed: int, timeout: float) -> dict:
    draw = random.Random(seed)
    weights = [kind.weight for kind in mix]

    def make(i: int) -> tuple[str, bytes]:
        kind = draw.choices(mix, weights)[0]
        return kind.name, kind.build(i)

    judge = Judge(mix)
    results = loadgen.run_mixed(server.host, server.port, make, concurrency, seconds, 0.0, timeout, judge)
    return {"results": results, "cache_hits": judge.cache_hits}


def health(server: Server) -> dict[str, Any]:
    def status_of(path: str) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(f"{server.url}{path}", timeout=10) as reply:
                return reply.status, reply.read()
        except OSError as error:
            return getattr(error, "code", 0), b""

    healthz, _ = status_of("/healthz")
    _, metrics = status_of("/metrics")
    held = re.search(rb"^initserve_inflight_bytes(?:\{[^}]*\})? (\S+)$", metrics, re.MULTILINE)
    errors = []
    for line in server.log_text().splitlines():
        try:
            level = json.loads(line).get("level")
        except (ValueError, AttributeError):
            level = None
        if level in ("error", "critical") or "Traceback" in line:
            errors.append(line[:500])
    return {
        "alive": server.process.poll() is None,
        "healthz": healthz,
        "budget_held_bytes": float(held.group(1)) if held else None,
        "log_errors": len(errors),
        "log_excerpt": errors[:5],
    }


def ms(value: float) -> float:
    return round(value * 1000, 1)


def summarise(mix: list[Kind], outcome: dict, seconds: float) -> dict[str, Any]:
    results: dict[str, loadgen.Result] = outcome["results"]
    rows, total = [], loadgen.Result(seconds)
    for kind in mix:
        result = results.get(kind.name, loadgen.Result(seconds))
        total.add(result)
        rows.append(
            {
                "class": kind.name,
                "request": kind.request,
                "weight": kind.weight,
                "expected": sorted(kind.expected),
                "responses": len(result.latencies),
                "statuses": dict(sorted(result.statuses.items())),
                "cache_hits": outcome["cache_hits"].get(kind.name, 0),
                "p50_ms": ms(result.percentile(0.50)),
                "p99_ms": ms(result.percentile(0.99)),
                "max_ms": ms(max(result.latencies, default=math.nan)),
                "mib": round(result.bytes / MIB, 1),
                "errors": sum(result.failures.values()),
                "failures": result.failures,
            }
        )
    responses = len(total.latencies)
    return {
        "classes": rows,
        "total": {
            "responses": responses,
            "statuses": dict(sorted(total.statuses.items())),
            "p50_ms": ms(total.percentile(0.50)),
            "p99_ms": ms(total.percentile(0.99)),
            "max_ms": ms(max(total.latencies, default=math.nan)),
            "mib": round(total.bytes / MIB, 1),
            "requests_per_second": round(responses / seconds, 1),
            "mib_per_second": round(total.bytes / MIB / seconds, 1),
            "errors": sum(total.failures.values()),
            "failures": total.failures,
            "unanswered": total.unanswered,
            "busy_503": total.statuses.get(503, 0),
            "busy_503_share": round(total.statuses.get(503, 0) / max(1, responses), 4),
        },
    }


def markdown(report: dict[str, Any]) -> str:
    memory, total, state = report["memory"], report["summary"]["total"], report["health"]
    statuses = ", ".join(f"{status}: {count}" for status, count in total["statuses"].items())
    lines = [
        "# Load test",
        "",
        f"`{report['command']}` on {report['machine']}, {report['date']}: `initserve serve` (one worker), "
        f"{report['concurrency']} keep-alive connections in a closed loop for {report['seconds']:g} s "
        f"(requests in flight at the end ran to completion: {report['elapsed_s']} s in all), each request drawn "
        "from the weighted mix below with its own seed.",
        "",
        "Settings: " + ", ".join(f"`{name}={value}`" for name, value in report["settings"].items()) + ".",
        "",
        "| class | request | weight | responses | statuses | p50 ms | p99 ms | max ms | MiB | errors |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in report["summary"]["classes"]:
        shown = ", ".join(f"{status}: {count}" for status, count in row["statuses"].items()) or "-"
        if row["cache_hits"]:
            shown += f" ({row['cache_hits']} cache hits)"
        lines.append(
            f"| {row['class']} | {row['request']} | {row['weight']} | {row['responses']} | {shown} | {row['p50_ms']} "
            f"| {row['p99_ms']} | {row['max_ms']} | {row['mib']} | {row['errors']} |"
        )
    lines += [
        f"| **all** | | | **{total['responses']}** | {statuses} | {total['p50_ms']} | {total['p99_ms']} | "
        f"{total['max_ms']} | {total['mib']} | **{total['errors']}** |",
        "",
        f"Throughput: {total['requests_per_second']} requests/s, {total['mib_per_second']} MiB/s received. "
        f"Back-pressure: {total['busy_503']} responses were 503 with Retry-After ({total['busy_503_share']:.1%}), "
        "the budget's answer when it stays full for INITSERVE_BUDGET_WAIT_SECONDS; not errors.",
        "",
        f"Server memory: idle RSS {memory['rss_before_mib']} MiB after warm-up; peak increase during the run "
        f"{memory['peak_increase_mib']} MiB (kernel VmHWM after "
        f"{'clear_refs' if memory['peak_reset'] else 'no reset (not permitted here)'}: {memory['hwm_increase_mib']} "
        f"MiB, sampled every 10 ms: {memory['sampled_increase_mib']} MiB; the larger is judged); RSS at the end "
        f"{memory['rss_after_mib']} MiB, {memory['rss_settled_mib']} MiB 2 s later. The response cache "
        f"(up to {int(report['settings']['INITSERVE_CACHE_BYTES']) / MIB:g} MiB) is part of the increase.",
        "",
        f"After the run: server alive {state['alive']}, GET /healthz {state['healthz']}, memory budget held "
        f"{state['budget_held_bytes']} bytes, {state['log_errors']} error or traceback lines in its log.",
        "",
    ]
    if total["failures"]:
        lines += ["Errors by reason:", ""]
        lines += [f"* {reason}: {count}" for reason, count in total["failures"].items()]
        lines.append("")
    if state["log_excerpt"]:
        lines += ["Server log (first error lines):", "", "```", *state["log_excerpt"], "```", ""]
    lines += [f"* {verdict['line']}" for verdict in report["verdicts"].values()]
    lines.append("")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60.0, help="how long clients start new requests")
    parser.add_argument("--concurrency", type=int, default=64, help="connections, one request in flight on each")
    parser.add_argument("--timeout", type=float, default=120.0, help="per request, to its last byte")
    parser.add_argument("--seed", type=int, default=0, help="of the draw of request classes")
    parser.add_argument("--only", nargs="+", metavar="CLASS", help="run only these classes (to attribute a result)")
    parser.add_argument("--exclude", nargs="+", default=[], metavar="CLASS", help="leave these classes out")
    parser.add_argument(
        "--set",
        nargs="+",
        default=[],
        metavar="NAME=VALUE",
        help="server environment beyond SETTINGS (a setting, MALLOC_ARENA_MAX, ...), e.g. to try a fix",
    )
    args = parser.parse_args()
    settings = {**SETTINGS, **dict(item.partition("=")[::2] for item in args.set)}
    names = [kind.name for kind in kinds("", "")]
    unknown = sorted({*(args.only or []), *args.exclude} - set(names))
    if unknown:
        parser.error(f"unknown classes {unknown}; the classes are {names}")
    with serve(settings) as server:
        etag = warm_up(server)
        mix = [
            kind
            for kind in kinds(f"{server.host}:{server.port}", etag)
            if kind.name in (args.only or names) and kind.name not in args.exclude
        ]
        time.sleep(1.0)  # let the warm-up's garbage go before the idle RSS is read
        memory = measured(server, lambda: load(server, mix, args.concurrency, args.seconds, args.seed, args.timeout))
        outcome = memory.pop("outcome")
        time.sleep(2.0)
        memory["rss_settled_mib"] = round(server.memory_kib()["VmRSS"] / 1024, 1)
        state = health(server)
    summary = summarise(mix, outcome, memory["seconds"])
    errors = summary["total"]["errors"]
    budget_mib = int(settings["INITSERVE_MEMORY_BUDGET_BYTES"]) / MIB
    within = memory["peak_increase_mib"] <= budget_mib
    healthy = state["alive"] and state["healthz"] == 200 and state["log_errors"] == 0 and not state["budget_held_bytes"]
    # One entry per target, {value, target, pass, line}: bench/run.py reads the first three, load.md the line.
    verdicts = {
        "errors": {
            "value": errors,
            "target": 0,
            "pass": errors == 0,
            "line": f"errors: {errors} (target 0): {'pass' if errors == 0 else 'FAIL'}",
        },
        "memory": {
            "value": memory["peak_increase_mib"],
            "target": budget_mib,
            "pass": within,
            "line": f"peak RSS increase {memory['peak_increase_mib']} MiB "
            + (f"within budget {budget_mib:g} MiB: pass" if within else f"exceeds budget {budget_mib:g} MiB: FAIL"),
        },
        "health": {
            "value": healthy,
            "target": True,
            "pass": healthy,
            "line": f"healthy after the run (alive, /healthz {state['healthz']}, budget released, no error logged): "
            f"{'pass' if healthy else 'FAIL'}",
        },
    }
    report = {
        "command": shlex.join(["python", "-m", "bench.load", *sys.argv[1:]]),
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": machine(),
        "settings": settings,
        "concurrency": args.concurrency,
        "seconds": args.seconds,
        "elapsed_s": memory["seconds"],
        "seed": args.seed,
        "classes_run": [kind.name for kind in mix],
        # every request sent: those answered, and those that got no complete response
        "requests": summary["total"]["responses"] + summary["total"]["unanswered"],
        "summary": summary,
        "memory": {**memory, "budget_mib": budget_mib},
        "health": state,
        "verdicts": verdicts,
        "pass": all(verdict["pass"] for verdict in verdicts.values()),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "load.json").write_text(json.dumps(report, indent=2) + "\n")
    text = markdown(report)
    (RESULTS / "load.md").write_text(text)
    print(text)
    return 0 if report["pass"] else 1


if __name__ == "__main__":
    sys.exit(main())
