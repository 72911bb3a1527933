"""A small closed-loop HTTP/1.1 load generator: `concurrency` keep-alive connections, one request in flight on
each, for a fixed time. Pure asyncio (uvloop when installed), so one command runs it anywhere.

Responses are counted, not kept: the client parses the status line and headers, then counts the body's bytes and
discards them as they arrive, so its own cost per response stays far below the server's. Bodies are framed as
HTTP/1.1 says (Content-Length, chunked, or until close; none for 1xx, 204 and 304), so a body whose byte count
differs from its Content-Length is seen, not misread as the next response.

`run` drives one kind of request (bench/http.py); `run_mixed` drives a mix, each request tagged with its class,
and tallies each class apart (bench/load.py); `run_groups` drives several groups of clients at once, each with its
own requests, count and timeout, beside clients that stop reading (the adversarial scenarios of bench/load.py).
None stops at a failure: a timeout or a connection the server closed mid-response is counted, the connection
replaced, and the run goes on; a server that refuses connections (dead) ends each client at the deadline.
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
        self._head_in = asyncio.Event()  # the response being read has its head
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
        self._head_in.set()
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

    async def exchange(self, request: bytes, head_timeout: float | None = None) -> Reply:
        """The whole response; with `head_timeout`, TimeoutError unless its head arrives within that time."""
        assert self.transport is not None
        self._done = asyncio.get_running_loop().create_future()
        self._reply = None
        self._head_in.clear()
        self._buffer.clear()
        self.transport.write(request)
        if head_timeout is not None:
            head = asyncio.ensure_future(self._head_in.wait())
            await asyncio.wait({head, self._done}, timeout=head_timeout, return_when=asyncio.FIRST_COMPLETED)
            head.cancel()
            if not self._head_in.is_set() and not self._done.done():
                self._done.cancel()  # the connection is closed next: nothing is to be set on this future
                raise TimeoutError(f"no response head within {head_timeout:g} s")
        return await self._done

    @property
    def partial(self) -> Reply | None:
        """The response being read, once its head is in."""
        return self._reply

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


CONNECT_TIMEOUT = 5.0  # a server that accepts nothing (dead, or its backlog full) must not stall a client


async def _connect(host: str, port: int) -> _Connection:
    connecting = asyncio.get_running_loop().create_connection(_Connection, host, port)
    return (await asyncio.wait_for(connecting, CONNECT_TIMEOUT))[1]


@dataclass(frozen=True)
class Clients:
    """A group of closed-loop connections, one request in flight on each, drawing requests from `make` (numbered
    from 1 within the group). `limit` bounds the group's requests in all (None: until the deadline), `delay`
    holds its first request back, `timeout` bounds each request to its last byte and `head_timeout` (if any) to
    its response's head: a server's promise of a first byte within its timeout is checked apart from how long a
    large body takes."""

    make: MixedRequest
    concurrency: int
    timeout: float = 120.0
    limit: int | None = None
    delay: float = 0.0
    head_timeout: float | None = None


@dataclass(frozen=True)
class Holders:
    """Clients that send one request each and then stop reading, holding the connection open until the deadline:
    the client that never drains a response. Those for which `read_head(n)` is true read the response's head
    first (to see its status); the others read nothing at all."""

    make: RequestBytes
    count: int
    read_head: Callable[[int], bool]


@dataclass
class Held:
    """What the holders saw, counted."""

    connected: int = 0
    not_connected: int = 0
    heads: dict[int, int] = field(default_factory=dict)  # status -> count, of the heads read
    no_retry_after: int = 0  # 503 heads without Retry-After
    closed_by_server: int = 0  # seen only while reading: before the head, by those that read it

    def summary(self) -> dict[str, int | dict[int, int]]:
        return {
            "connected": self.connected,
            "not_connected": self.not_connected,
            "heads": dict(sorted(self.heads.items())),
            "no_retry_after": self.no_retry_after,
            "closed_by_server": self.closed_by_server,
        }


class _Holder(asyncio.Protocol):
    def __init__(self, read_head: bool) -> None:
        self.read_head = read_head
        self.transport: asyncio.Transport | None = None
        self.head = bytearray()
        self.status: int | None = None
        self.retry_after = False
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self.status is not None or not self.read_head:
            return
        self.head += data
        end = self.head.find(b"\r\n\r\n")
        if end < 0:
            return
        lines = bytes(self.head[:end]).decode("latin-1").split("\r\n")
        self.status = int(lines[0].split()[1])
        self.retry_after = any(line.lower().startswith("retry-after:") for line in lines[1:])
        self.head.clear()
        assert self.transport is not None
        self.transport.pause_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True


async def _hold(host: str, port: int, request: bytes, read_head: bool, deadline: float, held: Held) -> None:
    loop = asyncio.get_running_loop()
    try:
        connecting = loop.create_connection(lambda: _Holder(read_head), host, port)
        transport, holder = await asyncio.wait_for(connecting, CONNECT_TIMEOUT)
    except (TimeoutError, OSError):
        held.not_connected += 1
        return
    held.connected += 1
    if not read_head:
        # Nothing is read from the socket from now on (no byte can have come before the request): the kernel's
        # buffers fill and the server's sends stall.
        transport.pause_reading()
    transport.write(request)
    await asyncio.sleep(max(0.0, deadline - time.perf_counter()))
    if holder.status is not None:
        held.heads[holder.status] = held.heads.get(holder.status, 0) + 1
        held.no_retry_after += holder.status == 503 and not holder.retry_after
    held.closed_by_server += holder.closed
    transport.abort()  # unread data in our buffer: the server sees a reset, as from a client that went away


async def _run(
    host: str,
    port: int,
    groups: list[Clients],
    seconds: float,
    warmup: float,
    check: Check | None,
    holders: Holders | None,
) -> tuple[dict[str, Result], Held]:
    results: dict[str, Result] = {}
    held = Held()
    start = time.perf_counter()
    measuring_from, deadline = start + warmup, start + warmup + seconds

    def result(kind: str) -> Result:
        return results.setdefault(kind, Result(seconds))

    async def worker(group: Clients, counter: list[int]) -> None:
        await asyncio.sleep(group.delay)
        connection: _Connection | None = None
        while (group.limit is None or counter[0] < group.limit) and time.perf_counter() < deadline:
            counter[0] += 1
            kind, request = group.make(counter[0])
            if (connection is None or connection.closed) and (
                connection := await _reconnect(host, port, deadline)
            ) is None:
                # A server that refused connections until the end (it died, most likely): the request that could
                # not be sent is the failure, counted once per client.
                result(kind).fail("could not connect until the end of the run", answered=False)
                return
            if connection.surplus:
                # Failures are counted from the start, warm-up included: a broken response is never noise.
                result(kind).fail("bytes after the end of a response")
                connection.surplus = 0
            now = time.perf_counter()
            try:
                reply = await asyncio.wait_for(connection.exchange(request, group.head_timeout), group.timeout)
            except (TimeoutError, ConnectionError, OSError) as error:
                reason = str(error) or f"no complete response within {group.timeout:g} s"
                if isinstance(error, TimeoutError) and (partial := connection.partial) is not None:
                    reason += f" (its head said {partial.status})"
                result(kind).fail(reason, False)
                connection.close()
                connection = None
                continue
            done = time.perf_counter()
            problem = None if reply.length_ok else "body length differs from Content-Length"
            problem = problem or (check(kind, reply) if check is not None else None)
            if problem is not None:
                result(kind).fail(problem)
            if now >= measuring_from:
                result(kind).record(reply, done - now)
            if reply.headers.get("connection", "").lower() == "close":
                connection.close()
                connection = None
        if connection is not None:
            connection.close()

    clients = []
    for group in groups:
        counter = [0]  # the group's request number, shared by its clients
        clients += [worker(group, counter) for _ in range(group.concurrency)]
    if holders is not None:
        hold = holders.make, holders.read_head
        clients += [_hold(host, port, hold[0](n), hold[1](n), deadline, held) for n in range(1, holders.count + 1)]
    await asyncio.gather(*clients)
    return results, held


async def _reconnect(host: str, port: int, deadline: float) -> _Connection | None:
    """A new connection, retried until the deadline (then None: this client stops). A server that refuses
    connections for a while has already shown as the failure that led here, not as the end of the whole run."""
    while True:
        try:
            return await _connect(host, port)
        except (TimeoutError, OSError):
            if time.perf_counter() > deadline:
                return None
            await asyncio.sleep(0.05)


def _runner() -> Callable:
    try:
        import uvloop

        return uvloop.run
    except ImportError:  # plain asyncio is slower but measures the same thing
        return asyncio.run


def run_groups(
    host: str,
    port: int,
    groups: list[Clients],
    seconds: float,
    warmup: float = 0.0,
    check: Check | None = None,
    holders: Holders | None = None,
) -> tuple[dict[str, Result], Held]:
    """Every group's closed loop (and the holders, if any) at once for `warmup` + `seconds`: a Result per request
    class, and what the holders saw. Only requests started after the warmup are timed and counted; failures are
    counted throughout. Requests in flight at the deadline run to their end (at most their group's timeout more)."""
    return _runner()(_run(host, port, groups, seconds, warmup, check, holders))


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
    """One group of `concurrency` clients (run_groups)."""
    return run_groups(host, port, [Clients(make, concurrency, timeout)], seconds, warmup, check)[0]


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
