"""infra/kcat.py: the command line and environment `glasscast kcat` runs Debian's kcat with."""

from __future__ import annotations

import os
from pathlib import Path

from infra.kcat import SONAME, bundled_librdkafka, kcat_argv, kcat_env, library_dir


def test_the_broker_is_added_unless_given() -> None:
    assert kcat_argv(["-L"], "127.0.0.1:9092") == ["kcat", "-b", "127.0.0.1:9092", "-L"]
    assert kcat_argv(["-b", "other:1", "-L"], "127.0.0.1:9092") == ["kcat", "-b", "other:1", "-L"]
    assert kcat_argv(["-bother:1", "-L"], "127.0.0.1:9092") == ["kcat", "-bother:1", "-L"]


def test_the_library_dir_comes_first(tmp_path: Path) -> None:
    env = kcat_env({"LD_LIBRARY_PATH": "/opt/lib", "HOME": "/root"}, tmp_path)
    assert env["LD_LIBRARY_PATH"] == f"{tmp_path}{os.pathsep}/opt/lib" and env["HOME"] == "/root"
    assert kcat_env({}, None) == {}


def test_the_link_points_at_confluent_kafkas_librdkafka(tmp_path: Path) -> None:
    library = bundled_librdkafka()
    assert library is not None and library.exists()
    made = library_dir(tmp_path, library)
    assert (made / SONAME).resolve() == library.resolve()
    assert library_dir(tmp_path, library) == made  # idempotent
