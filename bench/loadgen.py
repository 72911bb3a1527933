"""A small closed-loop HTTP/1.1 load generator: `concurrency` keep-alive connections, one request in flight on
each, for a fixed time. Pure asyncio (uvloop when installed), so one command runs it anywhere.

Responses are counted, not kept: the client parses the status line and headers, then counts the body's bytes and
discards them as they arrive, so its own cost per response stays far below the server's. Bodies are framed as
HTTP/1.1 says (Content-Length, chunked, or until close; none for 1xx, 204 and 304), so a body whose byte count
differs from its Content-Length is seen, not misread as the next response.

`run` drives one kind of request (bench/http.py); `run_mixed` drives a mix, each request tagged with its class,
and tallies each class apart (bench/load.py). Neither stops at a failure: a timeout or a connection the server
closed mid-response is counted, the connection replaced, and the run goes on.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

RequestBytes = Callable[[int], bytes]  # request number -> the raw request
MixedRequest = Callable[[int], tuple[str, bytes]]  # request number -> (its class, the raw request)


def post(path: str, body: bytes, host: str, headers: dict[str, str] | None = None) -> bytes:
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}", "Content-Type: application/json", f"Content-Length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def get(path: str, host: str, headers: dict[str, str] | None = None) -> bytes:
    lines = [f"GET {path} HTTP/1.1", f"Host: {host}", *(f"{k}: {v}" for k, v in (headers or {}).items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


@dataclass
class Reply:
    """One response as the client saw it; the body itself is not kept."""

    status: int
    headers: dict[str, str]  # names lower-cased; a repeated header keeps its last value
    framing: str  # "length", "chunked", "close" (read until the server closes), "none" (1xx, 204, 304)
    received: int = 0  # body bytes (chunked: the data, not the framing)

    @property
    def declared(self) -> int | None:
        value = self.headers.get("content-length")
        return int(value) if value is not None and value.strip().isdigit() else None

    @property
    def length_ok(self) -> bool:
        return self.framing != "length" or self.received == self.declared


Check = Callable[[str, Reply], str | None]  # (class, reply) -> why it is a failure, or None


class _Connection(asyncio.Protocol):
    """One keep-alive connection; `exchange` sends a request and resolves when its whole response is in."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._buffer = bytearray()  # the head while it arrives; then, for a chunked body, its unparsed framing
        self._reply: Reply | None = None  # the response being read, once its head is in
        self._remaining = 0  # "length": body bytes still to come; "chunked": bytes of the current chunk and CRLF
        self._last_chunk = False
        self._done: asyncio.Future[Reply] | None = None
        self.surplus = 0  # bytes that arrived when no response was expected
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._done is None or self._done.done():
            return
        if self._reply is not None and self._reply.framing == "close":
            self._finish()
            return
        got = f" after {self._reply.received} body bytes" if self._reply is not None else ""
        self._done.set_exception(ConnectionError(f"server closed the connection{got}"))

    def data_received(self, data: bytes) -> None:
        if self._done is None or self._done.done():
            self.surplus += len(data)
            return
        if self._reply is None:
            self._buffer += data
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self._buffer[:end]).decode("latin-1").split("\r\n")
            rest = bytes(self._buffer[end + 4 :])
            self._buffer.clear()
            status = int(head[0].split()[1])
            headers = {}
            for line in head[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            if 100 <= status < 200:  # an interim response: the real one follows
                self.data_received(rest)
                return
            self._start(Reply(status, headers, _framing(status, headers)))
            data = rest
        self._body(data)

    def _start(self, reply: Reply) -> None:
        self._reply = reply
        self._remaining = (reply.declared or 0) if reply.framing == "length" else 0
        self._last_chunk = False

    def _body(self, data: bytes) -> None:
        reply = self._reply
        assert reply is not None
        if reply.framing == "none":
            self.surplus += len(data)
            self._finish()
        elif reply.framing == "length":
            reply.received += len(data)  # past the end too: a longer body than declared must show
            self._remaining -= len(data)
            if self._remaining <= 0:
                self._finish()
        elif reply.framing == "close":
            reply.received += len(data)
        else:
            self._buffer += data
            self._chunked()

    def _chunked(self) -> None:
        reply = self._reply
        assert reply is not None
        while True:
            if self._remaining > 0:
                taken = min(self._remaining, len(self._buffer))
                del self._buffer[:taken]
                self._remaining -= taken
                if self._remaining > 0:
                    return
                if self._last_chunk:
                    self.surplus += len(self._buffer)
                    self._buffer.clear()
                    self._finish()
                    return
            end = self._buffer.find(b"\r\n")
            if end < 0:
                return
            size = int(bytes(self._buffer[:end]).split(b";")[0], 16)
            del self._buffer[: end + 2]
            reply.received += size
            # the chunk's data and its CRLF; the last chunk has no data, only the CRLF ending the (empty) trailer
            self._remaining = size + 2
            self._last_chunk = size == 0

    def _finish(self) -> None:
        assert self._done is not None and self._reply is not None
        reply, self._reply = self._reply, None
        self._done.set_result(reply)

    async def exchange(self, request: bytes) -> Reply:
        assert self.transport is not None
        self._done = asyncio.get_running_loop().create_future()
        self._reply = None
        self._buffer.clear()
        self.transport.write(request)
        return await self._done

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


def _framing(status: int, headers: dict[str, str]) -> str:
    if status in (204, 304):
        return "none"
    if "chunked" in headers.get("transfer-encoding", "").lower():
        return "chunked"
    return "length" if "content-length" in headers else "close"


@dataclass
class Result:
    seconds: float
    latencies: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    bytes: int = 0
    # Exchanges that failed, by reason: no complete response (timeout, connection lost), or one that `check`
    # refused or whose body length differs from its Content-Length (those are also in latencies and statuses).
    failures: dict[str, int] = field(default_factory=dict)
    unanswered: int = 0  # of the failures, those without a complete response

    def add(self, other: Result) -> None:
        """Pool another run of the same scenario into this one."""
        self.seconds += other.seconds
        self.latencies += other.latencies
        for status, count in other.statuses.items():
            self.statuses[status] = self.statuses.get(status, 0) + count
        self.bytes += other.bytes
        for reason, count in other.failures.items():
            self.failures[reason] = self.failures.get(reason, 0) + count
        self.unanswered += other.unanswered

    def record(self, reply: Reply, seconds: float) -> None:
        self.latencies.append(seconds)
        self.statuses[reply.status] = self.statuses.get(reply.status, 0) + 1
        self.bytes += reply.received

    def fail(self, reason: str, answered: bool = True) -> None:
        self.failures[reason] = self.failures.get(reason, 0) + 1
        self.unanswered += not answered

    @property
    def requests_per_second(self) -> float:
        return len(self.latencies) / self.seconds

    def percentile(self, q: float) -> float:
        if len(self.latencies) < 2:
            return self.latencies[0] if self.latencies else float("nan")
        return statistics.quantiles(self.latencies, n=1000, method="inclusive")[round(q * 1000) - 1]

    def summary(self) -> dict[str, float | int | dict[int, int] | dict[str, int]]:
        summary: dict[str, float | int | dict[int, int] | dict[str, int]] = {
            "requests": len(self.latencies),
            "rps": round(self.requests_per_second, 1),
            "p50_ms": round(self.percentile(0.50) * 1000, 2),
            "p99_ms": round(self.percentile(0.99) * 1000, 2),
            "mean_response_bytes": round(self.bytes / max(1, len(self.latencies))),
            "statuses": self.statuses,
        }
        if self.failures:
            summary["failures"] = self.failures
        return summary


async def _connect(host: str, port: int) -> _Connection:
    return (await asyncio.get_running_loop().create_connection(_Connection, host, port))[1]


async def _run(
    host: str,
    port: int,
    make: MixedRequest,
    concurrency: int,
    seconds: float,
    warmup: float,
    timeout: float,
    check: Check | None,
) -> dict[str, Result]:
    connections = [await _connect(host, port) for _ in range(concurrency)]
    counter = 0
    results: dict[str, Result] = {}
    start = time.perf_counter()
    measuring_from, deadline = start + warmup, start + warmup + seconds

    def result(kind: str) -> Result:
        return results.setdefault(kind, Result(seconds))

    async def worker(slot: int) -> None:
        nonlocal counter
        while (now := time.perf_counter()) < deadline:
            connection = connections[slot]
            counter += 1
            kind, request = make(counter)
            if connection.surplus:
                # Failures are counted from the start, warm-up included: a broken response is never noise.
                result(kind).fail("bytes after the end of a response")
                connection.surplus = 0
            try:
                reply = await asyncio.wait_for(connection.exchange(request), timeout)
            except (TimeoutError, ConnectionError, OSError) as error:
                reason = f"no response within {timeout:g} s" if isinstance(error, TimeoutError) else str(error)
                result(kind).fail(reason, answered=False)
                connection.close()
                if (replacement := await _reconnect(host, port, deadline)) is None:
                    return
                connections[slot] = replacement
                continue
            done = time.perf_counter()
            problem = None if reply.length_ok else "body length differs from Content-Length"
            problem = problem or (check(kind, reply) if check is not None else None)
            if problem is not None:
                result(kind).fail(problem)
            if now >= measuring_from:
                result(kind).record(reply, done - now)
            if connection.closed or reply.headers.get("connection", "").lower() == "close":
                connection.close()
                if (replacement := await _reconnect(host, port, deadline)) is None:
                    return
                connections[slot] = replacement

    try:
        await asyncio.gather(*(worker(slot) for slot in range(concurrency)))
    finally:
        for connection in connections:
            connection.close()
    return results


async def _reconnect(host: str, port: int, deadline: float) -> _Connection | None:
    """A new connection, retried until the deadline (then None: this client stops). A server that refuses
    connections for a while has already shown as the failure that led here, not as the end of the whole run."""
    while True:
        try:
            return await _connect(host, port)
        except OSError:
            if time.perf_counter() > deadline:
                return None
            await asyncio.sleep(0.05)


def _runner() -> Callable:
    try:
        import uvloop

        return uvloop.run
    except ImportError:  # plain asyncio is slower but measures the same thing
        return asyncio.run


def run_mixed(
    host: str,
    port: int,
    make: MixedRequest,
    concurrency: int,
    seconds: float,
    warmup: float = 0.0,
    timeout: float = 120.0,
    check: Check | None = None,
) -> dict[str, Result]:
    """Closed loop for `warmup` + `seconds`, a Result per request class. Only requests started after the warmup
    are timed and counted; failures are counted throughout. Requests in flight at the deadline run to their end
    (at most `timeout` more)."""
    return _runner()(_run(host, port, make, concurrency, seconds, warmup, timeout, check))


def run(host: str, port: int, make: RequestBytes, concurrency: int, seconds: float, warmup: float = 1.0) -> Result:
    """Closed loop for `warmup` + `seconds`; only requests started after the warmup are counted."""
    results = run_mixed(host, port, lambda i: ("", make(i)), concurrency, seconds, warmup)
    return results.get("", Result(seconds))


def fetch(host: str, port: int, requests: list[bytes], timeout: float = 120.0) -> list[Reply]:
    """Send `requests` one after another on one connection; their replies (bodies counted, not kept)."""

    async def sequence() -> list[Reply]:
        connection = await _connect(host, port)
        try:
            return [await asyncio.wait_for(connection.exchange(request), timeout) for request in requests]
        finally:
            connection.close()

    return _runner()(sequence())
