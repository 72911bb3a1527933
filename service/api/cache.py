"""An in-process cache of recent response bodies, keyed by ETag and bounded in bytes.

Many clients asking for the same seeded tensor (every rank of a job, every replica of a test) then cost one
generation. The ETag is derived from everything that determines the bytes, so it is a sound key. Only buffered
responses are kept (streamed ones are larger than the streaming threshold by definition). Bodies are bytes-like
and never written after they are stored. Several threads may use the cache, hence the lock.

Beside the bodies, a few thousand *heads* (a validated request's headers, ETag included) are remembered by the
request's canonical form, so that a repeated request is answered without resolving its plan again.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

HEAD_ENTRIES = 4096
# A response's headers that are not part of its remembered head: set anew for each answer.
_PER_ANSWER = frozenset({"content-length", "content-type", "x-initserve-cache"})


@dataclass(frozen=True)
class Head:
    """What a cached body is answered with: its headers (the ETag, which keys the body, among them) and media type."""

    headers: dict[str, str]
    media_type: str

    @property
    def etag(self) -> str:
        return next(value for name, value in self.headers.items() if name.lower() == "etag")

    @classmethod
    def of_cached(cls, raw_headers: list[tuple[bytes, bytes]]) -> Head | None:
        """The head of a response as sent (an ASGI start message's headers) if it says its body is in the cache."""
        given = {name.decode("latin-1"): value.decode("latin-1") for name, value in raw_headers}
        if "x-initserve-cache" not in given:
            return None
        headers = {name: value for name, value in given.items() if name not in _PER_ANSWER}
        return cls(headers, given["content-type"])


class ResponseCache:
    """Least-recently-used bodies up to `max_bytes` in total; `max_bytes == 0` turns it off."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[str, bytes | memoryview] = OrderedDict()
        self._bytes = 0
        self._heads: OrderedDict[str, Head] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.max_bytes > 0

    @property
    def nbytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str) -> bytes | memoryview | None:
        with self._lock:
            body = self._entries.get(key)
            if body is not None:
                self._entries.move_to_end(key)
            return body

    def put(self, key: str, body: bytes | memoryview) -> None:
        """Keep `body`, evicting the least recently used entries until the total fits; a body larger than the
        whole budget is not kept (it would evict everything and then itself)."""
        if len(body) > self.max_bytes:
            return
        with self._lock:
            previous = self._entries.pop(key, None)
            if previous is not None:
                self._bytes -= len(previous)
            self._entries[key] = body
            self._bytes += len(body)
            while self._bytes > self.max_bytes:
                _, evicted = self._entries.popitem(last=False)
                self._bytes -= len(evicted)

    def head(self, request_key: str) -> Head | None:
        """What `remember` stored for this request, or None."""
        with self._lock:
            head = self._heads.get(request_key)
            if head is not None:
                self._heads.move_to_end(request_key)
            return head

    def remember(self, request_key: str, head: Head) -> None:
        with self._lock:
            self._heads[request_key] = head
            self._heads.move_to_end(request_key)
            if len(self._heads) > HEAD_ENTRIES:
                self._heads.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._heads.clear()
            self._bytes = 0
