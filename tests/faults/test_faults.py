"""Fault injection against `glasscast up`, as the operator of issue 11 did it: one platform (the full ladder on a
machine with two cores or more), the ffmpeg CLI publishing, a chat sender and a watcher; then kill -9 of the
gateway, the processors, the media worker, the ingest (the encoder reconnects with the same key), Valkey and
the broker keeper, one at a time.  After each: the process is back with a new pid, the live playlist advances
again, every acknowledged chat message is in the history and was shown to the watcher, no GOP is missing
from media.gops or from the source rendition, and the channel has exactly its one live stream.  (The one
number a killed ingest had reserved for a GOP it had not yet stored stays unused: the frames died with the
process, and the takeover continues after it, media/ingest/live.py.)
Finally the publisher stops and the VOD lists every GOP.

The scenario and its measures live in bench/faults.py (the benchmark prints the same figures); the bounds
there detect a hang, they are not timings.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bench.faults import FAULTS, FaultReport, Scenario, ladder_mode
from infra.proctree import kill_platform
from tests.waiting import eventually

pytestmark = pytest.mark.integration

@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scenario]:
    data_dir = tmp_path_factory.mktemp("faults") / "data"
    s = Scenario(data_dir, eventually, ladder_mode())
    try:
        yield s.start()
    finally:
        s.close()
        kill_platform(data_dir)  # a failed start must not leave processes behind


def _failures(report: FaultReport) -> list[str]:
    checks = {
        "not back with a new pid in time": report.restart_s is None,
        "the live playlist did not advance again in time": report.video_gap_s is None,
        "fewer than two messages acknowledged once it was back": report.chat_acked < 2,
        "acknowledged messages missing from the history": bool(report.chat_lost),
        "acknowledged messages the watcher never saw": bool(report.chat_unseen),
        "GOPs lost": bool(report.gops_lost),
        "ghost streams": bool(report.ghost_streams),
        "a wait ran out": bool(report.notes),
    }
    return [what for what, failed in checks.items() if failed]


@pytest.mark.parametrize("name", FAULTS)
def test_kill_9(scenario: Scenario, name: str) -> None:
    report = scenario.fault(name)
    failures = _failures(report)
    assert not failures, (failures, report, scenario.up.status()["processes"][name])


def test_the_vod_has_every_gop_and_no_stream_is_left_live(scenario: Scenario) -> None:
    end = scenario.finish()
    assert end["gops"] > 0 and end["gops_missing_from_vod"] == [], end  # every GOP on the log has its segment
    assert end["ghost_streams"] == [], end  # the one stream ended, nothing else live
    assert end["gop_holes"] == [], end
    assert end["vod_segments"] == end["gops"], end
