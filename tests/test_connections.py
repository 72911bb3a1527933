"""Connection-level limits of the real server (`initserve serve`, raw sockets): a connection that sends nothing or
trickles its headers is closed, a client that stops reading is cut off and its memory budget released, and a
refused body is not read."""

from __future__ import annotations

import re
import socket
import time

import httpx
import pytest

from tests.server import CONSOLE_SCRIPT, serve

pytestmark = pytest.mark.skipif(not CONSOLE_SCRIPT.exists(), reason="initserve console script not installed")

SHORT = {
    "INITSERVE_LOG_LEVEL": "warning",
    "INITSERVE_KEEP_ALIVE_SECONDS": "1",
    "INITSERVE_HEADER_TIMEOUT_SECONDS": "1",
    "INITSERVE_SEND_TIMEOUT_SECONDS": "1",
}
WAIT_BOUND_SECONDS = 15.0  # far above the 1 s settings: only a connection that is never closed reaches it


def _connect(url: str, rcvbuf: int | None = None) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    sock = socket.socket()
    if rcvbuf is not None:  # before connect, so that the TCP window is small from the start
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.connect((host, int(port)))
    sock.settimeout(WAIT_BOUND_SECONDS)
    return sock


def _read_to_close(sock: socket.socket, limit: int = 1 << 30) -> bytes:
    """Everything the server sends until it closes the connection (or resets it)."""
    received = bytearray()
    try:
        while len(received) < limit:
            part = sock.recv(1 << 16)
            if not part:
                break
            received += part
    except ConnectionResetError:
        pass
    return bytes(received)


def _response_head(sock: socket.socket) -> tuple[bytes, bytes]:
    """The status line and headers of the next response, and what arrived after them."""
    received = b""
    while b"\r\n\r\n" not in received:
        part = sock.recv(4096)
        assert part, f"closed before a response: {received!r}"
        received += part
    head, _, rest = received.partition(b"\r\n\r\n")
    return head, rest


def _get_healthz(sock: socket.socket) -> bytes:
    """GET /healthz on an open connection: its status line and headers, once the whole response is read."""
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    head, body = _response_head(sock)
    length = int(re.search(rb"(?im)^content-length: *(\d+)", head).group(1))
    while len(body) < length:
        body += sock.recv(length - len(body))
    return head


def _inflight_bytes(url: str) -> float:
    match = re.search(r"^initserve_inflight_bytes (\S+)$", httpx.get(f"{url}/metrics").text, re.MULTILINE)
    assert match, "no initserve_inflight_bytes in /metrics"
    return float(match.group(1))


def test_a_connection_that_sends_nothing_is_closed():
    with serve(SHORT) as (url, _), _connect(url) as sock:
        try:
            assert sock.recv(1024) == b""  # closed by the server, nothing sent
        except TimeoutError:
            pytest.fail(f"an idle fresh connection was still open after {WAIT_BOUND_SECONDS} s")


def test_headers_trickled_byte_by_byte_are_cut_off_with_408():
    with serve(SHORT) as (url, _), _connect(url) as sock:
        # A valid request on the connection first: the header deadline re-arms after each response.
        assert _get_healthz(sock).startswith(b"HTTP/1.1 200")
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        sock.settimeout(0.25)
        for i in range(60):  # 15 s of one header every 0.25 s: each byte restarts uvicorn's keep-alive timer
            try:
                sock.sendall(b"X-Slow: %d\r\n" % i)
                answer = sock.recv(1024)
                break
            except TimeoutError:
                continue
        else:
            pytest.fail("a connection trickling its headers was never closed")
        assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
        assert b"INITSERVE_HEADER_TIMEOUT_SECONDS" in answer + _read_to_close(sock)


def test_keep_alive_connections_still_serve_several_requests():
    with serve(SHORT) as (url, _), _connect(url) as sock:
        for _ in range(3):
            assert _get_healthz(sock).startswith(b"HTTP/1.1 200")
            time.sleep(0.3)  # within the keep-alive and header timeouts


def test_clients_that_stop_reading_are_cut_off_and_release_the_budget():
    clients = 16
    body = b'{"shape":[4096,4096],"scheme":"normal","seed":1,"format":"safetensors"}'  # 64 MiB streamed
    request = b"POST /init HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
    with serve({**SHORT, "INITSERVE_SEND_TIMEOUT_SECONDS": "2"}) as (url, _):
        sockets = [_connect(url, rcvbuf=4096) for _ in range(clients)]
        try:
            for sock in sockets:
                sock.sendall(request % (len(body), body))
            deadline = time.monotonic() + WAIT_BOUND_SECONDS
            while _inflight_bytes(url) == 0 and time.monotonic() < deadline:
                time.sleep(0.05)  # the streams start and stall on the clients' full windows
            assert _inflight_bytes(url) > 0, "the streams never held any budget"
            while _inflight_bytes(url) > 0 and time.monotonic() < deadline:
                time.sleep(0.2)
            assert _inflight_bytes(url) == 0, "stalled streams still hold the memory budget"
            for sock in sockets:  # each was cut off: the connection ends long before 64 MiB arrived
                assert len(_read_to_close(sock)) < 32 << 20
        finally:
            for sock in sockets:
                sock.close()
        small = httpx.post(f"{url}/init", json={"shape": [4, 4], "scheme": "normal", "seed": 1, "format": "json"})
        assert small.status_code == 200


def _send_until_refused(sock: socket.socket, total: int, piece: bytes) -> int:
    sent = 0
    try:
        while sent < total:
            sock.sendall(piece)
            sent += len(piece)
    except OSError:  # EPIPE / ECONNRESET: the server closed its end
        pass
    return sent


def test_a_body_over_the_limit_is_not_read_after_the_413():
    total = 100 << 20
    with serve({"INITSERVE_LOG_LEVEL": "warning"}) as (url, _):
        with _connect(url) as sock:  # declared too large: 413 before any body byte
            sock.sendall(
                b"POST /init HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n" % total
            )
            head, _ = _response_head(sock)
            assert head.startswith(b"HTTP/1.1 413") and b"connection: close" in head.lower()
            sent = _send_until_refused(sock, total, b" " * (1 << 20))
            assert sent < total // 4, f"the server read {sent} body bytes after its 413"
        with _connect(url) as sock:  # chunked: refused once the count passes the limit
            sock.sendall(
                b"POST /init HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n"
            )
            piece = b" " * (1 << 16)
            sent = _send_until_refused(sock, total, b"%x\r\n%s\r\n" % (len(piece), piece))
            assert sent < total // 4, f"the server read {sent} body bytes past its limit"
        assert httpx.get(f"{url}/healthz").status_code == 200


def test_any_response_before_the_body_was_read_closes_the_connection():
    total = 100 << 20
    with serve({"INITSERVE_LOG_LEVEL": "warning", "INITSERVE_API_KEYS": "k"}) as (url, _), _connect(url) as sock:
        # Within the body limit but refused before it is read (no key): the rest of the body is not read either.
        sock.sendall(
            b"POST /init HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % total
        )
        head, _ = _response_head(sock)
        assert head.startswith(b"HTTP/1.1 401")
        sent = _send_until_refused(sock, total, b" " * (1 << 20))
        assert sent < total // 4, f"the server read {sent} body bytes after its 401"
