"""Whose data it is: the logged-in user, else the browser's anonymous id, else the API client's session."""

from __future__ import annotations

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


def require_owner(owner: Any) -> str:
    """`owner` when it is a non-empty key, else ValueError (data is never stored or read for nobody)."""
    if not owner or not isinstance(owner, str):
        raise ValueError(f"owner must be a non-empty key from owner_of(request, browser_id), got {owner!r}")
    return owner
