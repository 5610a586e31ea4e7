"""Read-only SQL rules and query parameters as text (views/analytics/readonly.py, params.py): pure."""

from __future__ import annotations

import pytest

from views.analytics.errors import QueryRefused
from views.analytics.params import param_text, params_text
from views.analytics.readonly import check_readonly, tokens


@pytest.mark.parametrize("sql", [
    "SELECT 1", "select 1;", "  WITH 1 AS x SELECT x", "SHOW TABLES", "DESCRIBE TABLE heartbeats", "DESC heartbeats",
    "-- why\nSELECT 1", "/* a; b */ SELECT 1", "# note\nSELECT 1", "SELECT ';' AS semi", 'SELECT 1 AS "a;b"',
    "SELECT `x;y` FROM t", "SELECT 'it''s; fine'", "SELECT 'back\\'slash; ok'", "SELECT 'into outfile' AS s",
])
def test_reads_pass(sql: str) -> None:
    assert check_readonly(sql).split()


@pytest.mark.parametrize("sql,why", [
    ("INSERT INTO t VALUES (1)", "not INSERT"),
    ("insert into t values (1)", "not INSERT"),
    ("/* SELECT */ DROP TABLE t", "not DROP"),
    ("-- SELECT\nALTER TABLE t DELETE WHERE 1", "not ALTER"),
    ("SELECT 1; DROP TABLE t", "one statement"),
    ("SELECT 1;;INSERT INTO t VALUES (1)", "one statement"),
    ("SELECT * FROM t INTO OUTFILE 'x'", "INTO OUTFILE"),
    ("", "empty"),
    (" ; ", "empty"),
    ("SELECT 'open", "unterminated"),
    ("SELECT 1 /* open", "unterminated"),
    ("OPTIMIZE TABLE t FINAL", "not OPTIMIZE"),
    ("EXPLAIN SELECT 1", "not EXPLAIN"),
])
def test_everything_else_is_refused(sql: str, why: str) -> None:
    with pytest.raises(QueryRefused, match=why):
        check_readonly(sql)


def test_trailing_semicolons_go() -> None:
    assert check_readonly("SELECT 1 ;; ") == "SELECT 1"


def test_tokens_skip_quotes_and_comments() -> None:
    assert tokens("SELECT 'a;b', \"c\" -- d;\n/* e; */ FROM t") == ["SELECT", "'", ",", '"', "FROM", "T"]


def test_parameter_text() -> None:
    assert param_text("plain") == "plain"
    assert param_text("tab\there\nnl \\ back") == "tab\\there\\nnl \\\\ back"
    assert param_text(None) == "\\N"
    assert param_text(True) == "1" and param_text(7) == "7" and param_text(1.5) == "1.5"
    assert param_text(["a", "it's", "b\\c"]) == "['a','it\\'s','b\\\\c']"
    assert param_text([1, 2]) == "[1,2]"
    with pytest.raises(TypeError):
        param_text(object())
    with pytest.raises(ValueError):
        params_text({"bad name": 1})
