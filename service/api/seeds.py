"""The seed of a request: the client's, or one the service draws and returns."""

from __future__ import annotations

import secrets

# A seed we draw is below 2^53 so that every JSON client (JavaScript's Number included) can read it back exactly.
DRAWN_SEED_BOUND = 1 << 53


def seed_of(requested: int | None) -> int:
    return requested if requested is not None else secrets.randbelow(DRAWN_SEED_BOUND)
