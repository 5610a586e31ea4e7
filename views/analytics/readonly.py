"""Read-only SQL for analysts (``glasscast sql``): which statements are let through, before the engine sees them.

Two locks, both needed:

1. ``check_readonly`` (here) lets through ONE statement that starts with
   SELECT, WITH, SHOW, DESCRIBE or DESC, and refuses a second statement after
   a ``;`` (chDB runs every statement of a multi-statement text, so a
   ``SELECT 1; INSERT ...`` would otherwise write) and ``INTO OUTFILE`` (a file
   written by the engine's process).  It reads the text with ClickHouse's
   lexical rules for quotes and comments, so a ``;`` or keyword inside a
   string, a quoted name or a comment does not count.
2. The store runs the statement with ClickHouse's ``readonly`` setting, so the
   engine itself refuses any write a clever statement might still hide (a
   ``SETTINGS`` clause cannot lift it: changing ``readonly`` is refused in
   readonly mode).
"""

from __future__ import annotations

from views.analytics.errors import QueryRefused

ALLOWED = ("SELECT", "WITH", "SHOW", "DESCRIBE", "DESC")


def tokens(sql: str) -> list[str]:
    """The statement's words and punctuation outside quotes and comments (quoted parts become ``'``/``"``)."""
    out: list[str] = []
    i, n = 0, len(sql)
    while i < n:
        c = sql[i]
        if c.isspace():
            i += 1
        elif sql.startswith("--", i) or c == "#":
            end = sql.find("\n", i)
            i = n if end < 0 else end + 1
        elif sql.startswith("/*", i):
            end = sql.find("*/", i + 2)
            if end < 0:
                raise QueryRefused("unterminated /* comment")
            i = end + 2
        elif c in "'\"`":
            i = _skip_quoted(sql, i, c)
            out.append("'" if c == "'" else '"')
        elif c.isalnum() or c == "_":
            j = i
            while j < n and (sql[j].isalnum() or sql[j] == "_"):
                j += 1
            out.append(sql[i:j].upper())
            i = j
        else:
            out.append(c)
            i += 1
    return out


def _skip_quoted(sql: str, i: int, quote: str) -> int:
    j = i + 1
    while j < len(sql):
        if sql[j] == "\\":
            j += 2
        elif sql[j] == quote:
            if sql.startswith(quote * 2, j):  # a doubled quote stands for itself
                j += 2
            else:
                return j + 1
        else:
            j += 1
    raise QueryRefused(f"unterminated {quote}quoted{quote} text")


def check_readonly(sql: str) -> str:
    """``sql`` without a trailing ``;`` when it is one read statement; else ``QueryRefused`` says why."""
    words = tokens(sql)
    while words and words[-1] == ";":
        words.pop()
    if not words:
        raise QueryRefused("empty statement")
    if words[0] not in ALLOWED:
        raise QueryRefused(f"only {', '.join(ALLOWED[:-1])} statements may run here, not {words[0]}")
    if ";" in words:
        raise QueryRefused("one statement at a time: remove what follows the ';'")
    for a, b in zip(words, words[1:], strict=False):
        if a == "INTO" and b == "OUTFILE":
            raise QueryRefused("INTO OUTFILE writes a file: use --format csv and redirect the output instead")
    return sql.rstrip().rstrip(";").rstrip()
