"""HTTP benchmark: POST /init [256, 784] against the framework's ceiling, through the real production server.

    /tmp/venv/bin/python -m bench.http [--seconds 6] [--rounds 6] [--concurrency 1 8 32]

Starts `initserve serve --app bench.ceiling:app` (one worker, production settings; the app is the production one
plus the ceiling endpoint (bench/ceiling.py), behind the same middleware, that returns pre-built bytes of the
same size as the /init response). A closed-loop keep-alive client (bench/loadgen.py) drives each scenario at each
concurrency and reports requests/s and p50/p99 latency:

* ceiling: POST /_bench/ceiling with the /init body, answering as many bytes as /init would;
* uncached: POST /init with a new seed on every request, so neither the cache nor an ETag can help;
* cached: the same request repeated, answered from the in-process cache.

Targets: uncached >= 70% of the ceiling's requests/s, cached >= 90%. Also the JSON encoding micro-benchmark:
our encoder against `json.dumps(array.tolist())` on [256, 784] float32 (target: >= 5x faster).
Writes bench/results/http.md and http.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import orjson

from bench import ceiling, loadgen
from bench.serving import serve

RESULTS = Path(__file__).parent / "results"
SHAPE = [256, 784]
SCHEME = "kaiming_normal"
TARGETS = {"uncached": 0.70, "cached": 0.90}
JSON_SPEEDUP_TARGET = 5.0


def init_body(fmt: str, seed: int) -> bytes:
    return orjson.dumps({"shape": SHAPE, "scheme": SCHEME, "seed": seed, "format": fmt})


def response_size(url: str, fmt: str) -> int:
    import urllib.request

    request = urllib.request.Request(f"{url}/init", data=init_body(fmt, 1), method="POST")
    with urllib.request.urlopen(request, timeout=60) as reply:
        return len(reply.read())


def scenarios(host: str, fmt: str, size: int) -> dict[str, loadgen.RequestBytes]:
    fixed = loadgen.post("/init", init_body(fmt, 1), host)
    ceiling = loadgen.post(f"/_bench/ceiling?size={size}", init_body(fmt, 1), host)
    # seeds far from the cached one and from each other run: every uncached request is generated
    base = time.time_ns() % (1 << 40) * 1000
    return {
        "ceiling": lambda i: ceiling,
        "uncached": lambda i: loadgen.post("/init", init_body(fmt, base + i), host),
        "cached": lambda i: fixed,
    }


def json_encoding(repeats: int = 5) -> dict[str, Any]:
    """Our JSON encoder against json.dumps(array.tolist()) on the same float32 tensor (best of `repeats`)."""
    from service.api.delivery import buffered_body, single
    from service.engine.plan import TensorRequest, make_plan
    from service.engine.region import Region
    from service.formats import FORMATS

    plan = make_plan(TensorRequest(shape=tuple(SHAPE), scheme=SCHEME, seed=1))
    values = plan.generate()

    class Generated(Region):
        """The plan's values as already generated: the encoding alone is measured."""

        def chunks(self, chunk_elements: int = 0) -> Any:
            yield values

    bundle = single(Generated(plan))

    def best(encode: Any) -> float:
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            encode()
            times.append(time.perf_counter() - start)
        return min(times)

    ours = best(lambda: buffered_body(bundle, FORMATS["json"]))
    baseline = best(lambda: json.dumps(values.tolist()))
    return {
        "shape": SHAPE,
        "ours_ms": round(ours * 1000, 2),
        "json_dumps_tolist_ms": round(baseline * 1000, 2),
        "speedup": round(baseline / ours, 1),
        "target": JSON_SPEEDUP_TARGET,
        "pass": baseline / ours >= JSON_SPEEDUP_TARGET,
    }


def body_costs(repeats: int = 21) -> dict[str, float]:
    """In-process median time to build each /init body (new seed each time): the work the ceiling does not do."""
    from service.api.delivery import buffered_body, single
    from service.engine.plan import TensorRequest, make_plan
    from service.engine.region import Region
    from service.formats import FORMATS

    costs = {}
    for fmt in ("safetensors", "json"):
        times = []
        for seed in range(repeats + 1):
            plan = make_plan(TensorRequest(shape=tuple(SHAPE), scheme=SCHEME, seed=1000 + seed))
            start = time.perf_counter()
            buffered_body(single(Region(plan)), FORMATS[fmt])
            times.append(time.perf_counter() - start)
        costs[f"{fmt}_ms"] = round(sorted(times[1:])[repeats // 2] * 1000, 2)
    return costs


def measure(seconds: float, concurrencies: list[int], warmup: float, rounds: int) -> dict[str, Any]:
    """Each cell alternates its scenarios in `rounds` short runs (ceiling, uncached, cached, ceiling, ...), so a
    drift in the machine's load (other processes) weighs on all three alike rather than on whichever ran then."""
    cells: list[dict[str, Any]] = []
    with serve(app=ceiling.APP) as server:
        for fmt in ("safetensors", "json"):
            size = response_size(server.url, fmt)
            host = f"{server.host}:{server.port}"
            for concurrency in concurrencies:
                row: dict[str, Any] = {"format": fmt, "concurrency": concurrency, "response_bytes": size}
                made = scenarios(host, fmt, size)
                totals = {name: loadgen.Result(0.0) for name in made}
                for _ in range(rounds):
                    for name, make in made.items():
                        part = loadgen.run(server.host, server.port, make, concurrency, seconds / rounds, warmup)
                        totals[name].add(part)
                for name, total in totals.items():
                    row[name] = total.summary()
                    print(f"{fmt:12} c={concurrency:<3} {name:9} {row[name]}", flush=True)
                for name, target in TARGETS.items():
                    ratio = row[name]["rps"] / row["ceiling"]["rps"]
                    row[f"{name}_ratio"] = round(ratio, 3)
                    row[f"{name}_pass"] = ratio >= target
                cells.append(row)
    return {"cells": cells}


def markdown(report: dict[str, Any]) -> str:
    lines = [
        "# HTTP benchmark",
        "",
        f"`python -m bench.http` on {report['machine']}, {report['date']}: `initserve serve`, one worker, production",
        f"settings; closed loop, keep-alive, {report['seconds']} s per cell and scenario, in {report['rounds']} runs "
        f"alternating the scenarios (each after {report['warmup']} s of warm-up). "
        f"Request: POST /init {SHAPE} {SCHEME} float32.",
        "The ceiling is an endpoint of the same app (same middleware) returning pre-built bytes of the same size.",
        "",
        "| format | conc. | ceiling rps | uncached rps (ratio) | cached rps (ratio) "
        "| p50 / p99 ms: ceiling | uncached | cached |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in report["cells"]:
        c, u, h = row["ceiling"], row["uncached"], row["cached"]
        mark = {name: "pass" if row[f"{name}_pass"] else "FAIL" for name in TARGETS}
        lines.append(
            f"| {row['format']} ({row['response_bytes']} B) | {row['concurrency']} | {c['rps']} | "
            f"{u['rps']} ({row['uncached_ratio']:.0%} {mark['uncached']}) | "
            f"{h['rps']} ({row['cached_ratio']:.0%} {mark['cached']}) | "
            f"{c['p50_ms']} / {c['p99_ms']} | {u['p50_ms']} / {u['p99_ms']} | {h['p50_ms']} / {h['p99_ms']} |"
        )
    js, costs = report["json_encoding"], report["body_ms"]
    lines += [
        "",
        f"Targets: uncached >= {TARGETS['uncached']:.0%} of the ceiling's requests/s, "
        f"cached >= {TARGETS['cached']:.0%}.",
        "",
        f"Work the ceiling does not do, in-process (median, new seed each time): building the safetensors body "
        f"{costs['safetensors_ms']} ms (generation), the JSON body {costs['json_ms']} ms (generation and encoding).",
        "",
        "## JSON encoding",
        "",
        f"[256, 784] float32, best of 5: ours {js['ours_ms']} ms, `json.dumps(array.tolist())` "
        f"{js['json_dumps_tolist_ms']} ms: **{js['speedup']}x** (target >= {js['target']}x: "
        f"{'pass' if js['pass'] else 'FAIL'}).",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=6.0, help="measured seconds per cell and scenario")
    parser.add_argument("--warmup", type=float, default=0.3, help="unmeasured seconds before each run")
    parser.add_argument("--rounds", type=int, default=6, help="alternating runs per cell and scenario")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    args = parser.parse_args()
    report = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
        "seconds": args.seconds,
        "warmup": args.warmup,
        "rounds": args.rounds,
        "json_encoding": json_encoding(),
        "body_ms": body_costs(),
    }
    print("json encoding:", report["json_encoding"], flush=True)
    report.update(measure(args.seconds, args.concurrency, args.warmup, args.rounds))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "http.json").write_text(json.dumps(report, indent=2) + "\n")
    (RESULTS / "http.md").write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
