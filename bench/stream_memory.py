"""Memory of delivery at any size, measured on the real server's process.

    /tmp/venv/bin/python -m bench.stream_memory [--elements 268435456] [--stats-elements 67108864]

Starts `initserve serve` (one worker, production settings), warms it up with two small requests (so the JIT
kernels are compiled before the baseline, but no large buffer has been allocated yet), then reads the server's
VmRSS and VmHWM (/proc/<pid>/status) and resets the peak where Linux allows it. Then:

* POST /init of a 1 GiB float32 tensor ([16384, 16384], 2^28 elements): the client reads it all, checks the
  length against Content-Length and the first 4 MiB against the engine; the server's peak RSS increase is
  compared with the 128 MiB budget;
* POST /stats over INITSERVE_MAX_STATS_ELEMENTS elements: the peak RSS increase of the chunked statistics.

Writes bench/results/stream_memory.md and stream_memory.json.
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from bench.serving import Server, measured, serve

RESULTS = Path(__file__).parent / "results"
BUDGET_MIB = 128
CHECKED_PREFIX = 4 << 20


def post(server: Server, path: str, body: dict[str, Any], sink: Callable[[bytes], None]) -> tuple[int, int, int]:
    """(status, Content-Length, bytes read); the body goes to `sink` piece by piece, never kept whole."""
    connection = http.client.HTTPConnection(server.host, server.port, timeout=600)
    connection.request("POST", path, body=orjson.dumps(body), headers={"Content-Type": "application/json"})
    response = connection.getresponse()
    declared = int(response.getheader("Content-Length") or -1)
    received = 0
    while piece := response.read(1 << 20):
        received += len(piece)
        sink(piece)
    connection.close()
    return response.status, declared, received


def stream_case(server: Server, elements: int) -> dict[str, Any]:
    side = math.isqrt(elements)
    body = {"shape": [side, elements // side], "scheme": "kaiming_normal", "seed": 1}
    from service.engine.plan import TensorRequest, make_plan

    plan = make_plan(TensorRequest(shape=tuple(body["shape"]), scheme="kaiming_normal", seed=1))
    expected = plan.generate(0, CHECKED_PREFIX // 4).tobytes()
    prefix = bytearray()
    header: dict[str, int] = {}

    def sink(piece: bytes) -> None:
        if len(prefix) < 8 + (header.get("length") or 1 << 30) + CHECKED_PREFIX:
            prefix.extend(piece)
            if "length" not in header and len(prefix) >= 8:
                header["length"] = int.from_bytes(prefix[:8], "little")

    def action() -> dict[str, Any]:
        status, declared, received = post(server, "/init", body, sink)
        start = 8 + header["length"]
        return {
            "status": status,
            "content_length": declared,
            "received": received,
            "length_matches": declared == received,
            "first_4_mib_match_engine": bytes(prefix[start : start + CHECKED_PREFIX]) == expected,
        }

    result = measured(server, action)
    result["shape"] = body["shape"]
    result["tensor_mib"] = plan.nbytes / (1 << 20)
    result["throughput_mib_s"] = round(plan.nbytes / (1 << 20) / result["seconds"], 1)
    return result


def stats_case(server: Server, elements: int) -> dict[str, Any]:
    side = math.isqrt(elements)
    body = {"shape": [side, elements // side], "scheme": "kaiming_normal", "seed": 1}
    chunks: list[bytes] = []

    def action() -> dict[str, Any]:
        status, _, _ = post(server, "/stats", body, chunks.append)
        report = json.loads(b"".join(chunks))
        return {"status": status, "count": report["empirical"]["count"], "ks_n": report["ks"]["n"]}

    result = measured(server, action)
    result["shape"] = body["shape"]
    result["tensor_mib"] = elements * 4 / (1 << 20)
    return result


def markdown(report: dict[str, Any]) -> str:
    s, t = report["stream"], report["stats"]
    verdict = "pass" if report["pass"] else "FAIL"
    return "\n".join(
        [
            "# Streaming memory",
            "",
            f"`python -m bench.stream_memory`, {report['date']}: `initserve serve` (one worker, production settings);",
            "the server's VmRSS/VmHWM from /proc/<pid>/status, the peak reset before each case "
            f"({'clear_refs' if s['peak_reset'] else 'not permitted here: VmHWM increase over the previous peak'}),",
            "cross-checked by sampling VmRSS every 10 ms.",
            "",
            "| case | tensor | server RSS before | peak increase | budget | time |",
            "|---|---|---|---|---|---|",
            f"| POST /init {s['shape']} float32, streamed | {s['tensor_mib']:.0f} MiB | {s['rss_before_mib']} MiB | "
            f"**{s['peak_increase_mib']} MiB** | {BUDGET_MIB} MiB: {verdict} | {s['seconds']} s "
            f"({s['throughput_mib_s']} MiB/s) |",
            f"| POST /stats {t['shape']} float32 | {t['tensor_mib']:.0f} MiB | {t['rss_before_mib']} MiB | "
            f"{t['peak_increase_mib']} MiB | - | {t['seconds']} s |",
            "",
            f"Stream checks: status {s['outcome']['status']}, Content-Length {s['outcome']['content_length']} = "
            f"bytes received {s['outcome']['received']}: {s['outcome']['length_matches']}; first 4 MiB equal to the "
            f"engine's: {s['outcome']['first_4_mib_match_engine']}. (Kernel VmHWM increase {s['hwm_increase_mib']} "
            f"MiB, sampled {s['sampled_increase_mib']} MiB; the larger is reported.)",
            "",
            f"/stats: {t['outcome']['count']} elements in chunks, KS on {t['outcome']['ks_n']}; peak increase "
            f"{t['peak_increase_mib']} MiB (VmHWM {t['hwm_increase_mib']}, sampled {t['sampled_increase_mib']}).",
            "",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--elements", type=int, default=1 << 28, help="streamed tensor (float32 elements)")
    parser.add_argument("--stats-elements", type=int, default=1 << 26, help="/stats tensor (elements)")
    args = parser.parse_args()
    with serve() as server:
        # Small requests only: the kernels get compiled, but no large buffer is allocated before the baseline.
        post(server, "/init", {"shape": [64, 64], "scheme": "kaiming_normal", "seed": 2}, lambda piece: None)
        post(server, "/stats", {"shape": [64, 64], "scheme": "kaiming_normal", "seed": 2}, lambda piece: None)
        stream = stream_case(server, args.elements)
        print("stream:", stream, flush=True)
        stats = stats_case(server, args.stats_elements)
        print("stats:", stats, flush=True)
    report = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "budget_mib": BUDGET_MIB,
        "stream": stream,
        "stats": stats,
        "pass": stream["peak_increase_mib"] <= BUDGET_MIB
        and stream["outcome"]["length_matches"]
        and stream["outcome"]["first_4_mib_match_engine"],
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "stream_memory.json").write_text(json.dumps(report, indent=2) + "\n")
    (RESULTS / "stream_memory.md").write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
