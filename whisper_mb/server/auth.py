"""The optional API key: ``Authorization: Bearer KEY`` as OpenAI's clients send it, or ``?token=KEY`` from a
browser, which cannot set headers on a WebSocket or on the page it opens."""

from __future__ import annotations

import hmac
from collections.abc import Mapping


def presented_key(headers: Mapping[str, str], query: Mapping[str, str]) -> str | None:
    """The key a request carries, if any."""
    scheme, _, credentials = headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    return query.get("token")


def is_authorized(expected: str | None, headers: Mapping[str, str], query: Mapping[str, str]) -> bool:
    """Whether the request may pass: always without a key, else only with that key (compared in constant time)."""
    if expected is None:
        return True
    key = presented_key(headers, query)
    return key is not None and hmac.compare_digest(key.encode(), expected.encode())
