"""The UI side of the error policy (errors.py): one place turns exceptions into what a person sees.

A `UserError` becomes a `gr.Error` with its own message; a `gr.Error` raised by a handler passes as it is; anything
else is logged with a traceback and shown as "Internal error (id …)", so a torch failure is never presented as the
person's mistake and is never lost from the log.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

import gradio as gr

from errors import UserError, internal_message, log_internal


def to_gr_error(exc: BaseException, what: str = "") -> gr.Error:
    """The message a person sees for `exc`; `what` names the action that failed (e.g. "Could not load X")."""
    if isinstance(exc, gr.Error):
        return exc
    if isinstance(exc, UserError):
        return gr.Error(f"{what}: {exc}" if what else str(exc))
    error_id = log_internal(exc, what or "a UI handler")
    return gr.Error(f"{what}. {internal_message(error_id)}" if what else internal_message(error_id))


def guarded(fn: Callable) -> Callable:
    """`fn` with the error policy applied; a generator function stays one (so it still streams)."""
    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                yield from fn(*args, **kwargs)
            except Exception as exc:
                raise to_gr_error(exc) from None
    else:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return fn(*args, **kwargs)
            except Exception as exc:
                raise to_gr_error(exc) from None
    return wrapper
