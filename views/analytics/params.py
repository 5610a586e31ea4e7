"""Query parameters as the text ClickHouse parses for a ``{name:Type}`` placeholder (chDB takes them as text).

ClickHouse reads a parameter's value in its "escaped" text format (that of
TabSeparated): in a string, a backslash starts an escape and a tab or line
break must be escaped; an array is ``[...]`` with its strings single-quoted.
The engine parses the text as the placeholder's type, so a value never
becomes SQL: a string is only ever a string.
"""

from __future__ import annotations

from collections.abc import Mapping

_ESCAPES = {"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r", "\0": "\\0", "\b": "\\b", "\f": "\\f"}


def escaped(text: str) -> str:
    """``text`` in the escaped format: backslashes and control characters escaped."""
    return "".join(_ESCAPES.get(c, c) for c in text)


def quoted(text: str) -> str:
    """``text`` as a single-quoted string literal (inside an array parameter)."""
    return "'" + escaped(text).replace("'", "\\'") + "'"


def _element(value: object) -> str:
    if isinstance(value, str):
        return quoted(value)
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_element(v) for v in value) + "]"
    return param_text(value)


def param_text(value: object) -> str:
    """One parameter's text: ``None`` as ``\\N``, booleans as 1/0, numbers as written, arrays bracketed."""
    if value is None:
        return "\\N"
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return escaped(value)
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_element(v) for v in value) + "]"
    raise TypeError(f"a query parameter must be None, a bool, a number, a string or a list, not {type(value)}")


def params_text(params: Mapping[str, object]) -> dict[str, str]:
    """Every parameter as text, names checked (a name is a plain identifier)."""
    for name in params:
        if not name.isidentifier():
            raise ValueError(f"bad query parameter name {name!r}")
    return {name: param_text(value) for name, value in params.items()}
