"""Errors of the chat history store.

    HistoryError              the store could not do what was asked
    └── HistoryUnavailable    the backend did not answer (unreachable, locked, timed out): try again later

Backends translate their library's errors into these with ``raise ... from exc``;
a bad setting is an ``infra.errors.SettingsError`` that names the variable.
"""

from __future__ import annotations


class HistoryError(Exception):
    """The chat history store failed."""


class HistoryUnavailable(HistoryError):
    """The chat history backend did not answer; the same call may succeed later."""
