"""Errors the dataset browser raises; each message is meant for the user as it is."""

from __future__ import annotations

from errors import UserError


class DatasetError(UserError):
    """A dataset could not be opened, read or queried; the message names what and why."""


class RefusedError(DatasetError):
    """A request was refused for safety: a path outside the allowed folders, an unsafe query, a size limit."""


class QueryTimeoutError(DatasetError):
    """A search, filter or statistics query ran past its time limit and was interrupted."""
