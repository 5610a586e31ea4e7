"""``glasscast kcat``: the standard Kafka command-line client, pointed at the platform.

Debian 12's kcat 1.7.1 is linked against librdkafka 2.0.2, whose ApiVersion
request the embedded broker (Tansu) answers in a form that old client cannot
read ("ApiVersionRequest failed: Local: Read underflow"), so it cannot even
fetch metadata.  The same kcat binary works once it loads a newer librdkafka,
and confluent-kafka's wheel ships one (2.x).  So this command runs the
system's kcat with that library first on ``LD_LIBRARY_PATH`` (a
``librdkafka.so.1`` link in the data directory) and adds ``-b`` with the running
platform's broker unless one is given.  Against Apache Kafka (the compose
deployment) the system's kcat works on its own.

Debian builds kcat without Avro (no ``-s value=avro``): records print as their
Confluent framing (magic byte, schema id, Avro body).  ``glasscast tail TOPIC
--json`` prints them decoded through the registry.
"""

from __future__ import annotations

import glob
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path

KCAT = "kcat"
SONAME = "librdkafka.so.1"  # what kcat is linked against


def bundled_librdkafka() -> Path | None:
    """The librdkafka that confluent-kafka's wheel ships, if it ships one."""
    import confluent_kafka

    libs = Path(confluent_kafka.__file__).resolve().parent.parent / "confluent_kafka.libs"
    found = sorted(glob.glob(str(libs / "librdkafka*.so*")))
    return Path(found[0]) if found else None


def library_dir(data_dir: Path, library: Path) -> Path:
    """A directory holding ``librdkafka.so.1`` -> ``library`` (made once, replaced atomically)."""
    target = data_dir / "run" / "kcat-lib"
    target.mkdir(parents=True, exist_ok=True)
    link = target / SONAME
    if not (link.is_symlink() and Path(os.readlink(link)) == library):
        tmp = target / f".{SONAME}.{os.getpid()}"
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(library)
        os.replace(tmp, link)
    return target


def kcat_argv(args: Sequence[str], bootstrap_servers: str) -> list[str]:
    """kcat's command line: ``-b`` added unless the caller gave one."""
    given = any(a == "-b" or a.startswith("-b") and len(a) > 2 for a in args)
    return [KCAT, *args] if given else [KCAT, "-b", bootstrap_servers, *args]


def kcat_env(environ: Mapping[str, str], lib_dir: Path | None) -> dict[str, str]:
    """The environment with ``lib_dir`` first on the library path."""
    env = dict(environ)
    if lib_dir is not None:
        env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (str(lib_dir), env.get("LD_LIBRARY_PATH")) if p)
    return env


def find_kcat() -> str | None:
    """The kcat on PATH (Debian: ``apt-get install kcat``)."""
    return shutil.which(KCAT)
