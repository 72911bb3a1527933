"""A small closed-loop HTTP/1.1 load generator: `concurrency` keep-alive connections, one request in flight on
each, for a fixed time. Pure asyncio (uvloop when installed), so one command runs it anywhere.

Responses are counted, not kept: the client parses the status line and Content-Length and discards the body as
it arrives, so its own cost per response stays far below the server's.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

RequestBytes = Callable[[int], bytes]  # request number -> the raw request


def post(path: str, body: bytes, host: str, headers: dict[str, str] | None = None) -> bytes:
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}", "Content-Type: application/json", f"Content-Length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class _Connection(asyncio.Protocol):
    """One keep-alive connection; `exchange` sends a request and resolves when its whole response is in."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._head = bytearray()
        self._remaining = -1  # body bytes still to come; -1 while reading the head
        self._status = 0
        self._done: asyncio.Future[tuple[int, int]] | None = None
        self._length = 0
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        if self._done is not None and not self._done.done():
            self._done.set_exception(ConnectionError("server closed the connection"))
        if not self.lost.done():
            self.lost.set_result(None)

    def data_received(self, data: bytes) -> None:
        if self._remaining < 0:
            self._head += data
            end = self._head.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self._head[:end]).decode("latin-1").split("\r\n")
            self._status = int(head[0].split()[1])
            self._length = 0
            for line in head[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    self._length = int(value)
            self._remaining = self._length - (len(self._head) - end - 4)
            self._head.clear()
        else:
            self._remaining -= len(data)
        if self._remaining <= 0 and self._done is not None and not self._done.done():
            self._remaining = -1
            self._done.set_result((self._status, self._length))

    async def exchange(self, request: bytes) -> tuple[int, int]:
        assert self.transport is not None
        self._done = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        return await self._done


@dataclass
class Result:
    seconds: float
    latencies: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    bytes: int = 0

    def add(self, other: Result) -> None:
        """Pool another run of the same scenario into this one."""
        self.seconds += other.seconds
        self.latencies += other.latencies
        for status, count in other.statuses.items():
            self.statuses[status] = self.statuses.get(status, 0) + count
        self.bytes += other.bytes

    @property
    def requests_per_second(self) -> float:
        return len(self.latencies) / self.seconds

    def percentile(self, q: float) -> float:
        if len(self.latencies) < 2:
            return self.latencies[0] if self.latencies else float("nan")
        return statistics.quantiles(self.latencies, n=1000, method="inclusive")[round(q * 1000) - 1]

    def summary(self) -> dict[str, float | int | dict[int, int]]:
        return {
            "requests": len(self.latencies),
            "rps": round(self.requests_per_second, 1),
            "p50_ms": round(self.percentile(0.50) * 1000, 2),
            "p99_ms": round(self.percentile(0.99) * 1000, 2),
            "mean_response_bytes": round(self.bytes / max(1, len(self.latencies))),
            "statuses": self.statuses,
        }


async def _run(host: str, port: int, make: RequestBytes, concurrency: int, seconds: float, warmup: float) -> Result:
    loop = asyncio.get_running_loop()
    connections = [(await loop.create_connection(_Connection, host, port))[1] for _ in range(concurrency)]
    counter = 0
    result = Result(seconds)
    start = time.perf_counter()
    measuring_from, deadline = start + warmup, start + warmup + seconds

    async def worker(connection: _Connection) -> None:
        nonlocal counter
        while (now := time.perf_counter()) < deadline:
            counter += 1
            status, length = await connection.exchange(make(counter))
            done = time.perf_counter()
            if now >= measuring_from:
                result.latencies.append(done - now)
                result.statuses[status] = result.statuses.get(status, 0) + 1
                result.bytes += length

    try:
        await asyncio.gather(*(worker(c) for c in connections))
    finally:
        for connection in connections:
            if connection.transport is not None:
                connection.transport.close()
    return result


def run(host: str, port: int, make: RequestBytes, concurrency: int, seconds: float, warmup: float = 1.0) -> Result:
    """Closed loop for `warmup` + `seconds`; only requests started after the warmup are counted."""
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:  # plain asyncio is slower but measures the same thing
        runner = asyncio.run
    return runner(_run(host, port, make, concurrency, seconds, warmup))
