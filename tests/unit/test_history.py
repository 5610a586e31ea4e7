"""The CI gate: every schema is BACKWARD compatible with its committed versions."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

import schemas
from schemas.errors import SchemaHistoryError
from schemas.history import check_history, committed_versions, repo_root


def test_the_repository_schemas_keep_backward_compatibility() -> None:
    problems = check_history()
    assert problems == [], "\n".join(problems)


def test_the_package_sits_in_a_git_checkout() -> None:
    # The gate above means something only if the history could be read.
    root = repo_root(Path(schemas.__file__).parent)
    assert (root / "schemas").is_dir()


GIT_ENV = {
    "GIT_AUTHOR_NAME": "Test", "GIT_AUTHOR_EMAIL": "test@example.invalid",
    "GIT_COMMITTER_NAME": "Test", "GIT_COMMITTER_EMAIL": "test@example.invalid",
    "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1",
}


@pytest.fixture(autouse=True)
def hermetic_git(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for key, value in GIT_ENV.items():
        monkeypatch.setenv(key, value)
    # Never let git find a repository above tmp_path.
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True)
    return done.stdout.strip()


def ping(*extra: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "record", "name": "Ping", "namespace": "glasscast.demo", "doc": "A ping.",
        "fields": [
            {"name": "event_id", "type": {"type": "string", "logicalType": "uuid"}, "doc": "Id."},
            {"name": "occurred_at", "type": {"type": "long", "logicalType": "timestamp-millis"}, "doc": "When."},
            *extra,
        ],
    }


def commit(repo: Path, schema: dict[str, Any], message: str, rel: str = "schemas/demo/Ping.avsc") -> str:
    write(repo, schema, rel)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


def write(repo: Path, schema: dict[str, Any], rel: str = "schemas/demo/Ping.avsc") -> None:
    path = repo / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(schema, indent=2))


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    path = tmp_path / "repo"
    path.mkdir()
    git(path, "init", "-q")
    return path


def test_a_committed_incompatible_change_is_reported(repo: Path) -> None:
    first = commit(repo, ping({"name": "n", "type": "int", "doc": "A number."}), "v1")
    second = commit(repo, ping({"name": "n", "type": "string", "doc": "A number, now text."}), "v2")
    assert [v.commit for v in committed_versions(repo, "schemas/demo/Ping.avsc")] == [first, second]
    assert check_history(repo / "schemas") == [
        f"schemas/demo/Ping.avsc ({first[:12]} -> {second[:12]}): Ping.n: new type string cannot read old type int"
    ]


def test_an_uncommitted_incompatible_change_is_reported(repo: Path) -> None:
    first = commit(repo, ping(), "v1")
    write(repo, ping({"name": "region", "type": "string", "doc": "Region."}))
    assert check_history(repo / "schemas") == [
        f"schemas/demo/Ping.avsc (working tree vs {first[:12]}): Ping.region: field in the new schema "
        "has no default and is missing from the old schema"
    ]


def test_compatible_evolution_and_new_files_pass(repo: Path) -> None:
    commit(repo, ping(), "v1")
    commit(repo, ping({"name": "n", "type": ["null", "int"], "default": None, "doc": "A number."}), "v2")
    write(repo, ping({"name": "n", "type": ["null", "long"], "default": None, "doc": "A bigger number."}))
    write(repo, {**ping(), "name": "Pong"}, "schemas/demo/Pong.avsc")  # no history yet
    assert check_history(repo / "schemas") == []


def test_a_deleted_and_restored_file_keeps_its_history(repo: Path) -> None:
    commit(repo, ping({"name": "n", "type": "int", "doc": "A number."}), "v1")
    (repo / "schemas/demo/Ping.avsc").unlink()
    commit(repo, ping(), "unrelated change", rel="schemas/demo/Other.avsc")
    (repo / "schemas/demo/Other.avsc").unlink()
    write(repo, ping({"name": "n", "type": "boolean", "doc": "A flag."}))
    assert len(committed_versions(repo, "schemas/demo/Ping.avsc")) == 1
    problems = check_history(repo / "schemas")
    assert problems and "Ping.n: new type boolean cannot read old type int" in problems[0]


def test_outside_a_git_checkout_the_check_refuses(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    (plain / "demo").mkdir(parents=True)
    (plain / "demo" / "Ping.avsc").write_text(json.dumps(ping()))
    with pytest.raises(SchemaHistoryError, match="is not inside a git checkout") as info:
        check_history(plain)
    assert isinstance(info.value, ValueError)


def test_a_shallow_clone_is_refused(repo: Path, tmp_path: Path) -> None:
    commit(repo, ping(), "v1")
    commit(repo, ping({"name": "n", "type": "int", "default": 0, "doc": "A number."}), "v2")
    shallow = tmp_path / "shallow"
    subprocess.run(["git", "clone", "-q", "--depth", "1", repo.as_uri(), str(shallow)], check=True)
    with pytest.raises(SchemaHistoryError, match="shallow clone"):
        check_history(shallow / "schemas")
