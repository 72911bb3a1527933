"""A request body read ahead by a middleware, then replayed to the app as if it had not been read."""

from __future__ import annotations

from starlette.types import Message, Receive


async def read_body(receive: Receive, max_bytes: int | None = None) -> tuple[list[Message], bytes | None]:
    """The request's messages up to the end of its body (or the disconnect that cut it short, or the first past
    `max_bytes`), and the body if it is whole and at most `max_bytes` (else None)."""
    messages: list[Message] = []
    size = 0
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            return messages, None
        size += len(message.get("body", b""))
        if max_bytes is not None and size > max_bytes:
            return messages, None
        if not message.get("more_body", False):
            return messages, b"".join(m.get("body", b"") for m in messages)


def replay(messages: list[Message], receive: Receive) -> Receive:
    """`messages` (already received) first, then what `receive` says."""
    pending = list(messages)

    async def replayed() -> Message:
        return pending.pop(0) if pending else await receive()

    return replayed
