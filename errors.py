"""The app's one error policy, shared by every layer (no gradio, no torch here).

`UserError` is the base of every refusal the person can act on: a bad parameter, an unknown model, a limit reached,
an unsupported or corrupt file. Its message is written for them (what was expected, what arrived, what to do).
The UI shows it as a message and `/v1` answers with its `status` (4xx). Anything else that escapes a handler is a
bug or an internal failure: it is logged with a traceback under a short id, and the person sees
"Internal error (id …)" (500 on the API), never a message that blames their input.
"""

from __future__ import annotations

import logging
import uuid

logger = logging.getLogger(__name__)


class UserError(Exception):
    """A refusal the person can act on; `str(exc)` is shown to them as it is."""

    status = 400  # HTTP status on the API
    code = "invalid_request_error"  # OpenAI-style error type


class NotFound(UserError, LookupError):
    """Something named by the person does not exist (a model, a collection, a dataset, a job)."""

    status = 404
    code = "not_found_error"


class LimitReached(UserError):
    """A rate, queue, size or memory limit refused the request; trying later (or smaller) can succeed."""

    status = 429
    code = "rate_limit_error"


class Unavailable(UserError):
    """A service the request needs is down or busy (a remote engine, a model still loading)."""

    status = 503
    code = "service_unavailable"


def log_internal(exc: BaseException, what: str = "request") -> str:
    """Log an unexpected failure with its traceback and return the short id that the person is shown."""
    error_id = uuid.uuid4().hex[:8]
    logger.error("internal error %s in %s", error_id, what, exc_info=(type(exc), exc, exc.__traceback__))
    return error_id


def internal_message(error_id: str) -> str:
    return f"Internal error (id {error_id}): this is a fault in the app, not in your input; the server log has details."


class InvalidInput(UserError, ValueError):
    """A value the person sent is out of range, malformed or of the wrong kind (also a ValueError)."""


def require_text(text: str, what: str) -> str:
    """`text` itself when it is valid Unicode, else InvalidInput naming `what`.

    A JSON request (or a browser) can send an unpaired surrogate such as \\ud800; tokenizers and UTF-8 encoders
    fail on it deep inside, so it is refused where the text comes in.
    """
    try:
        if isinstance(text, str):
            text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidInput(f"{what} holds an unpaired surrogate ({text[exc.start]!r} at character {exc.start}), "
                           "which is not valid Unicode text: remove it") from None
    return text
