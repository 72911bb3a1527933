"""How `initserve serve` runs uvicorn: deadlines on every connection, and a worker supervisor that drains and counts
correctly.

uvicorn's HTTP protocol has no deadline for a request's headers, none for a connection that never sends a byte
(its keep-alive timer starts only after a first response), and none for a client that stops reading: a response
then waits forever for room in the socket, holding its memory budget. `Connection` adds the three. uvicorn's
multi-worker supervisor keeps its own copy of the listening socket open while the workers drain (new connections
are accepted by the kernel, never served, then reset), and a worker killed by a signal leaves its share of the live
gauges in PROMETHEUS_MULTIPROC_DIR forever. `Supervisor` fixes both.

The supervisor process imports only this module and uvicorn, never the application.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from asyncio import TimerHandle
from functools import cache
from typing import Any

import orjson
from uvicorn import Config, Server
from uvicorn.config import STARTUP_FAILURE
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState
from uvicorn.supervisors.multiprocess import Multiprocess

from service.settings import Settings

logger = logging.getLogger("uvicorn.error")


class ServerConfig(Config):
    """uvicorn's configuration plus the deadlines `Connection` reads (pickled to every worker with the rest)."""

    def __init__(self, app: str, *, header_timeout: float, send_timeout: float, **options: Any) -> None:
        super().__init__(app, **options)
        self.header_timeout = header_timeout
        self.send_timeout = send_timeout


@cache
def _request_timeout(seconds: float) -> bytes:
    body = orjson.dumps(
        {
            "detail": [
                {
                    "loc": ["header"],
                    "msg": f"the request's headers did not arrive within {seconds:g} s "
                    "(INITSERVE_HEADER_TIMEOUT_SECONDS)",
                    "type": "timeout",
                }
            ]
        }
    )
    head = (
        b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
        b"content-length: %d\r\nconnection: close\r\n\r\n" % len(body)
    )
    return head + body


class Connection(HttpToolsProtocol):
    """One HTTP/1.1 connection (uvicorn's httptools protocol, what `http="auto"` picks) with three deadlines:

    * idle: a connection with no request under way is closed after `timeout_keep_alive` seconds without a byte,
      from the moment it is made (uvicorn starts counting only after a first response);
    * headers: a request's headers must be complete within `header_timeout` seconds of the connection or of the
      previous response (each byte restarts the idle timer, so a client trickling bytes would never hit it); a
      request begun and not finished in time gets 408, then the connection is closed;
    * sending: while a response waits for room in the socket, the client must take some of it every
      `send_timeout` seconds, or the connection is aborted (not closed: close would wait for the unsent data). The
      response's pending send then returns, and it ends as for any client that left, releasing its budget.

    And a response sent before its request's body was read (a 413, a 401) closes the connection: uvicorn would
    otherwise read and discard the rest of the body, however large.
    """

    config: ServerConfig

    def __init__(
        self,
        config: ServerConfig,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self._header_deadline: TimerHandle | None = None
        self._request_begun = False
        self._send_check: TimerHandle | None = None
        self._unsent = 0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.timeout_keep_alive_task = self.loop.call_later(self.timeout_keep_alive, self.timeout_keep_alive_handler)
        self._await_headers()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_header_deadline()
        self._stop_send_check()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._request_begun = True

    def on_headers_complete(self) -> None:
        self._stop_header_deadline()
        self._request_begun = False
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        if not self.pipeline and self.cycle.more_body:
            self.transport.close()  # the body was not read: stop reading now (uvicorn's bookkeeping follows)
        super().on_response_complete()
        if self.timeout_keep_alive_task is not None:  # idle (no pipelined request started): await the next one
            self._await_headers()

    def _await_headers(self) -> None:
        self._header_deadline = self.loop.call_later(self.config.header_timeout, self._headers_too_slow)

    def _stop_header_deadline(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _headers_too_slow(self) -> None:
        self._header_deadline = None
        if self.transport.is_closing():
            return
        if self._request_begun:  # an idle connection just ends; a half-sent request learns why
            self.transport.write(_request_timeout(self.config.header_timeout))
        self.transport.close()

    def pause_writing(self) -> None:
        super().pause_writing()
        self._watch_send(self.transport.get_write_buffer_size())

    def resume_writing(self) -> None:
        super().resume_writing()
        self._stop_send_check()

    def _watch_send(self, unsent: int) -> None:
        self._stop_send_check()
        self._unsent = unsent
        self._send_check = self.loop.call_later(self.config.send_timeout, self._check_send_progress)

    def _stop_send_check(self) -> None:
        if self._send_check is not None:
            self._send_check.cancel()
            self._send_check = None

    def _check_send_progress(self) -> None:
        self._send_check = None
        unsent = self.transport.get_write_buffer_size()
        if unsent < self._unsent:  # the client took some: a slow reader, not a stalled one
            self._watch_send(unsent)
            return
        host, port = self.client or ("?", 0)
        logger.info(
            "client %s:%d read nothing for %g s (INITSERVE_SEND_TIMEOUT_SECONDS): connection aborted",
            host,
            port,
            self.config.send_timeout,
        )
        self.transport.abort()


class Supervisor(Multiprocess):
    """uvicorn's worker supervisor, which also closes its listening socket as soon as the drain starts (so that new
    connections are refused at once, as with one worker) and drops the live gauges of a worker that died."""

    def __init__(self, config: Config, sockets: list[Any]) -> None:
        super().__init__(config, sockets)
        self._workers: set[int] = set()

    def handle_term(self) -> None:
        self._stop_listening()
        super().handle_term()

    def handle_int(self) -> None:
        self._stop_listening()
        super().handle_int()

    def _stop_listening(self) -> None:
        # The workers close their copies as they start to drain; the socket stops listening when the last one goes.
        for sock in self.sockets:
            sock.close()

    def keep_subprocess_alive(self) -> None:
        super().keep_subprocess_alive()  # replaces dead or hung workers
        workers = {process.pid for process in self.processes if process.pid is not None}
        directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        if directory:
            from prometheus_client import multiprocess

            for pid in self._workers - workers:
                multiprocess.mark_process_dead(pid, directory)
        self._workers = workers


def run(
    settings: Settings, host: str, port: int, workers: int, log_config: dict[str, Any], app: str = "service.app:app"
) -> None:
    """Serve the application (`app`, an import string) until SIGTERM or SIGINT, then drain: what `uvicorn.run`
    does, with the above."""
    config = ServerConfig(
        app,
        host=host,
        port=port,
        workers=workers,
        http=Connection,
        timeout_keep_alive=settings.keep_alive_seconds,  # type: ignore[arg-type]  # uvicorn says int; any delay works
        header_timeout=settings.header_timeout_seconds,
        send_timeout=settings.send_timeout_seconds,
        log_level=settings.log_level,
        log_config=log_config,
        access_log=False,  # our access log (request id, JSON) replaces uvicorn's
        proxy_headers=True,
    )
    if workers > 1:
        Supervisor(config, sockets=[config.bind_socket()]).run()
        return
    server = Server(config)
    server.run()
    if not server.started:
        sys.exit(STARTUP_FAILURE)
