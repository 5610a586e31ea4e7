"""Check every schema file against its committed versions (the CI gate).

Schemas evolve BACKWARD-compatibly (docs/ARCHITECTURE.md, "Events"): a consumer on the new
schema must read every record already on the topics, which were written with
the old ones (Avro 1.11.1, "Schema Resolution",
https://avro.apache.org/docs/1.11.1/specification/#schema-resolution).

For each ``.avsc`` under a directory this module reads every committed version
from git and checks

- the working-tree file against the latest committed version (the change being
  made), and
- each consecutive pair of committed versions, so a committed incompatible
  change is still caught on a fresh clone in CI.

A file with no history is new and has nothing to be compatible with.  Git is
the only I/O here (subprocess); the comparison itself is ``schemas.compat``.
Without a full git history the check cannot be made, and it says so by raising
``SchemaHistoryError`` rather than passing quietly.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from schemas.compat import check_backward
from schemas.errors import SchemaHistoryError
from schemas.loader import SCHEMA_SUFFIX, parse_json

GIT_TIMEOUT_S = 60
SHORT_HASH = 12


@dataclass(frozen=True)
class SchemaVersion:
    """One committed version of a schema file."""

    commit: str
    schema: dict[str, Any]


def _git(root: Path, *args: str) -> str:
    try:
        done = subprocess.run(
            ["git", *args], cwd=root, capture_output=True, text=True, timeout=GIT_TIMEOUT_S, check=False
        )
    except FileNotFoundError as exc:
        raise SchemaHistoryError("git is not installed; the schema history check needs it") from exc
    except subprocess.TimeoutExpired as exc:
        raise SchemaHistoryError(f"git {' '.join(args)} took longer than {GIT_TIMEOUT_S} s") from exc
    if done.returncode != 0:
        raise SchemaHistoryError(f"git {' '.join(args)} failed in {root}: {done.stderr.strip()}")
    return done.stdout


def repo_root(directory: Path) -> Path:
    """The top of the git checkout holding directory; raises if there is none or it is shallow."""
    if not directory.is_dir():
        raise SchemaHistoryError(f"{directory} is not a directory")
    try:
        top = _git(directory, "rev-parse", "--show-toplevel").strip()
    except SchemaHistoryError as exc:
        raise SchemaHistoryError(
            f"{directory} is not inside a git checkout, so the schemas cannot be checked "
            f"against their committed versions ({exc})"
        ) from exc
    root = Path(top).resolve()
    # A shallow clone (CI's default fetch-depth 1) hides the history this check is about.
    if _git(root, "rev-parse", "--is-shallow-repository").strip() == "true":
        raise SchemaHistoryError(
            f"{root} is a shallow clone; fetch the full history (git fetch --unshallow, "
            "or fetch-depth: 0 in CI) so the schemas can be checked against every committed version"
        )
    return root


def committed_versions(root: Path, rel_path: str) -> list[SchemaVersion]:
    """Every committed version of a file on the first-parent history, oldest first."""
    # --name-status marks the commits that deleted the file, which have nothing to show.
    # (--diff-filter cannot be used: git gives the root commit no diff to filter.)
    log = _git(root, "log", "--first-parent", "--name-status", "--format=commit %H", "--", rel_path)
    commits: list[str] = []
    for line in log.splitlines():
        if line.startswith("commit "):
            commits.append(line.split()[1])
        elif line.startswith("D\t") and commits:
            commits.pop()
    versions = []
    for commit in reversed(commits):
        text = _git(root, "show", f"{commit}:{rel_path}")
        versions.append(SchemaVersion(commit, parse_json(text, f"{rel_path}@{commit[:SHORT_HASH]}")))
    return versions


def check_file(root: Path, path: Path) -> list[str]:
    """BACKWARD problems of one schema file across its history and working-tree change."""
    rel = path.resolve().relative_to(root).as_posix()
    versions = committed_versions(root, rel)
    problems: list[str] = []
    for older, newer in zip(versions, versions[1:]):
        label = f"{rel} ({older.commit[:SHORT_HASH]} -> {newer.commit[:SHORT_HASH]})"
        problems += [f"{label}: {p}" for p in check_backward(newer.schema, older.schema)]
    if versions:
        current = parse_json(path.read_text(encoding="utf-8"), rel)
        latest = versions[-1]
        if current != latest.schema:
            label = f"{rel} (working tree vs {latest.commit[:SHORT_HASH]})"
            problems += [f"{label}: {p}" for p in check_backward(current, latest.schema)]
    return problems


def check_history(schemas_dir: Path | None = None) -> list[str]:
    """BACKWARD problems of every ``.avsc`` under schemas_dir (default: this package); [] if none."""
    directory = (schemas_dir or Path(__file__).parent).resolve()
    root = repo_root(directory)
    problems: list[str] = []
    for path in sorted(directory.rglob(f"*{SCHEMA_SUFFIX}")):
        problems += check_file(root, path)
    return problems
