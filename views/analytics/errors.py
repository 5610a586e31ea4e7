"""Errors of the analytics store.

    AnalyticsError            the store could not do what was asked
    ├── AnalyticsUnavailable  the store did not answer (unreachable, timed out): try again later
    └── QueryRefused          the statement is not allowed here (a write through read-only SQL) or is malformed

Implementations translate their library's errors into these with ``raise ... from exc``.
"""

from __future__ import annotations


class AnalyticsError(Exception):
    """The analytics store failed."""


class AnalyticsUnavailable(AnalyticsError):
    """The analytics store did not answer; the same call may succeed later."""


class QueryRefused(AnalyticsError):
    """The store refused the statement: a write where only reads are allowed, bad SQL, an unknown table."""
