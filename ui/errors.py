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


def to_gr_error(exc: BaseException, what: str = "", kept: str = "") -> gr.Error:
    """The message a person sees for `exc`.

    Args:
        what: the action that failed, e.g. "Could not load X" (put before the message).
        kept: what the person still has, e.g. "Everything up to the failure is kept." (put after it).
    """
    if isinstance(exc, gr.Error):
        return exc
    if isinstance(exc, UserError):
        message = f"{what}: {exc}" if what else str(exc)
    else:
        message = internal_message(log_internal(exc, what or "a UI handler"))
        message = f"{what}. {message}" if what else message
    return gr.Error(f"{message.rstrip('.')}. {kept}" if kept else message)


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
