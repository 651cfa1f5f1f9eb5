"""Who is asking, in one key format `<kind>:<value>` used everywhere (history, collections, votes, jobs, prefix
cache, rate limits, Stop): `user:<name>` (logged in with --auth), `browser:<id>` (the anonymous id a browser keeps),
`session:<hash>` (one gradio connection or gradio_client Client), `key:<fingerprint>` / `ip:<address>` (a /v1
caller), or `local` (Python callers). Nothing here imports gradio: a request is anything with `username`,
`session_hash` (gradio) or headers and a client address (the API)."""

from __future__ import annotations

import hashlib
import re
import uuid
from typing import Any

_ID = re.compile(r"^[A-Za-z0-9_-]{8,64}$")


def new_browser_id() -> str:
    """A fresh anonymous id, stored in the browser (gr.BrowserState) so it survives reloads."""
    return uuid.uuid4().hex


def valid_browser_id(value: Any) -> str:
    """The id when it looks like one we issued, else '' (a tampered value never names someone else's data)."""
    return value if isinstance(value, str) and _ID.match(value) else ""


def owner_of(request: Any, browser_id: str | None) -> str:
    """The owner key of a request.

    Args:
        request: a gr.Request (or anything with `username` and `session_hash`), or None for local calls.
        browser_id: the anonymous id kept in the browser's gr.BrowserState ('' for API clients).

    Returns:
        'user:<name>' with --auth, else 'browser:<id>', else 'session:<hash>' (one gradio_client Client),
        else 'local'.
    """
    username = getattr(request, "username", None) if request is not None else None
    if username:
        return f"user:{username}"
    bid = valid_browser_id(browser_id)
    if bid:
        return f"browser:{bid}"
    session = getattr(request, "session_hash", None) if request is not None else None
    if session:
        return f"session:{session}"
    return "local"


def session_of(request: Any) -> str:
    """The connection a request came from (what Stop ends): `session:<hash>`, or `local` without a request."""
    session = getattr(request, "session_hash", None) if request is not None else None
    return f"session:{session}" if session else "local"


def rate_key_of(request: Any) -> str:
    """Whom a rate limit counts: the logged-in user across their sessions, else the connection."""
    username = getattr(request, "username", None) if request is not None else None
    return f"user:{username}" if username else session_of(request)


def api_caller(token: str, client_host: str | None) -> str:
    """A /v1 caller: the fingerprint of its API key (never the key itself), else its address."""
    if token:
        return "key:" + hashlib.sha256(token.encode()).hexdigest()[:16]
    return "ip:" + (client_host or "unknown")


def require_owner(owner: Any) -> str:
    """`owner` when it is a non-empty key, else ValueError (data is never stored or read for nobody)."""
    if not owner or not isinstance(owner, str):
        raise ValueError(f"owner must be a non-empty key from owner_of(request, browser_id), got {owner!r}")
    return owner
