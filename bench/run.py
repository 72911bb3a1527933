"""Every benchmark, one after the other, then one table of every target: `python -m bench.run`.

    python -m bench.run            # the full runs (about 20 minutes on 2 cores)
    python -m bench.run --quick    # smoke runs of each (about 5 minutes): numbers too rough to quote
    python -m bench.run --only engine http

Each benchmark runs in its own process (`python -m bench.<name>`), so none inherits another's threads, caches or
heap, and writes its own bench/results/<name>.md and .json. This script then reads the JSON files and writes
bench/results/summary.md, and puts the same table in README.md between its `bench:start` / `bench:end` markers.
Run it on a machine doing nothing else: every ratio is measured within one run, but a busy machine still lowers
the side that uses more cores.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
README = ROOT / "README.md"
START, END = "<!-- bench:start -->", "<!-- bench:end -->"

# name (of its results file) -> (module, full arguments, quick arguments)
BENCHMARKS: dict[str, tuple[str, list[str], list[str]]] = {
    "engine": ("engine", [], ["--quick"]),
    "http": ("http", [], ["--seconds", "1.5", "--rounds", "2"]),
    "stream_memory": ("stream_memory", [], []),
    "load": ("load", [], ["--seconds", "10"]),
    "load_adversarial": (
        "load",
        ["--scenario", "all"],
        ["--scenario", "all", "--seconds", "5", "--baseline-seconds", "2", "--large-timeout", "20"],
    ),
}

Row = tuple[str, str, str, str]  # what, measured, target, verdict


def verdict(passed: bool | None) -> str:
    return "n/a" if passed is None else ("pass" if passed else "**FAIL**")


def engine_rows(data: dict[str, Any]) -> list[Row]:
    rows = []
    for case in data["cases"]:
        shape = "x".join(map(str, case["shape"]))
        ratio = case["ratio"]
        measured = (
            "no torch" if ratio is None else f"{ratio:.2f}x torch ({100 * case['bandwidth_fraction']:.0f}% of bw)"
        )
        rows.append((f"engine {case['scheme']} {shape}", measured, f">= {case['target']:g}x", verdict(case["passed"])))
    return rows


def http_rows(data: dict[str, Any]) -> list[Row]:
    rows = []
    for cell in data["cells"]:
        what = f"HTTP {cell['format']} c={cell['concurrency']}"
        rows.append(
            (
                f"{what} uncached",
                f"{100 * cell['uncached_ratio']:.0f}% of ceiling",
                ">= 70%",
                verdict(cell["uncached_pass"]),
            )
        )
        rows.append(
            (f"{what} cached", f"{100 * cell['cached_ratio']:.0f}% of ceiling", ">= 90%", verdict(cell["cached_pass"]))
        )
    encoding = data["json_encoding"]
    rows.append(
        (
            "JSON encoding [256,784]",
            f"{encoding['speedup']:.1f}x json.dumps(tolist())",
            f">= {encoding['target']:g}x",
            verdict(encoding["pass"]),
        )
    )
    return rows


def stream_memory_rows(data: dict[str, Any]) -> list[Row]:
    stream = data["stream"]
    return [
        (
            f"streaming {stream['tensor_mib']:.0f} MiB: server peak RSS increase",
            f"{stream['peak_increase_mib']:.1f} MiB",
            f"<= {data['budget_mib']} MiB",
            verdict(data["pass"]),
        )
    ]


def load_rows(data: dict[str, Any]) -> list[Row]:
    verdicts = data["verdicts"]
    return [
        (
            f"load: {data['concurrency']} clients, {data['seconds']:g} s, mixed sizes: errors",
            f"{verdicts['errors']['value']} of {data['requests']}",
            "0",
            verdict(verdicts["errors"]["pass"]),
        ),
        (
            "load: server peak RSS increase",
            f"{verdicts['memory']['value']:.0f} MiB",
            f"<= {verdicts['memory']['target']:.0f} MiB (budget)",
            verdict(verdicts["memory"]["pass"]),
        ),
    ]


def load_adversarial_rows(data: dict[str, Any]) -> list[Row]:
    rows = []
    label = f" ({data['note'].partition(':')[0]})" if data.get("note") else ""  # e.g. a run before fixes
    for run in data["scenarios"]:
        what = f"adversarial {run['name']}{label}: small p99, errors small/adv., RSS, process"
        if "error" in run:
            rows.append((what, "not completed", "all targets", verdict(False)))
            continue
        small, quiet = run["small"]["total"], run["quiet"]["total"]
        measured = (
            f"{small['p99_ms']:g} ms (quiet {quiet['p99_ms']:g}), {small['errors'] + quiet['errors']}/"
            f"{run['large']['total']['errors']}, +{run['memory']['peak_increase_mib']:.0f} MiB, "
            + ("alive" if run["verdicts"]["alive"]["pass"] else "dead")
        )
        target = f"<= max(5x, 50 ms), 0/0, <= {run['memory']['allowance_mib']:.0f} MiB, alive and released"
        rows.append((what, measured, target, verdict(run["pass"])))
    return rows


SUMMARIES: dict[str, Callable[[dict[str, Any]], list[Row]]] = {
    "engine": engine_rows,
    "http": http_rows,
    "stream_memory": stream_memory_rows,
    "load": load_rows,
    "load_adversarial": load_adversarial_rows,
}


def summary() -> str:
    lines = ["| benchmark | measured | target | result |", "|---|---|---|---|"]
    dates = []
    for name, rows_of in SUMMARIES.items():
        path = RESULTS / f"{name}.json"
        if not path.exists():
            lines.append(f"| {name} | not run | | |")
            continue
        data = json.loads(path.read_text())
        dates.append(f"{name} {data.get('when') or data.get('date')}")
        lines += [f"| {' | '.join(row)} |" for row in rows_of(data)]
    details = ", ".join(f"[{name}](bench/results/{name}.md)" for name in SUMMARIES)
    return "\n".join(
        [
            f"Latest run ({'; '.join(dates)}), 2 cores; details: {details}.",
            "",
            *lines,
        ]
    )


def update_readme(table: str) -> None:
    text = README.read_text()
    head, start, rest = text.partition(START)
    _, end, tail = rest.partition(END)
    if not start or not end:
        raise SystemExit(f"README.md has no {START} ... {END} block to update")
    README.write_text(f"{head}{START}\n{table}\n{END}{tail}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smoke runs: checks the benchmarks work, not speed")
    parser.add_argument("--only", nargs="+", choices=list(BENCHMARKS), help="run these only (others keep old results)")
    parser.add_argument("--summary-only", action="store_true", help="rebuild the table from existing results")
    args = parser.parse_args()
    failed = []
    if not args.summary_only:
        for name in args.only or list(BENCHMARKS):
            module, full, quick = BENCHMARKS[name]
            command = [sys.executable, "-m", f"bench.{module}", *(quick if args.quick else full)]
            print(f"== {' '.join(command[1:])}", flush=True)
            started = time.monotonic()
            # A benchmark that misses a target exits non-zero; its results are still written and summarised.
            if subprocess.run(command, cwd=ROOT).returncode != 0:
                failed.append(name)
            print(f"== {name}: {time.monotonic() - started:.0f} s", flush=True)
    table = summary()
    (RESULTS / "summary.md").write_text(f"# Benchmark summary\n\n`python -m bench.run`\n\n{table}\n")
    if not args.quick:  # rough numbers never reach the README
        update_readme(table)
    print(table)
    if failed:
        print(f"exited non-zero (a target missed or a failure): {', '.join(failed)}")


if __name__ == "__main__":
    main()
