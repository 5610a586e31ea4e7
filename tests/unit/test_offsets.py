from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from media.transcode.offsets import OffsetTracker

P = ("media.gops", 0)


def test_commits_only_a_done_prefix() -> None:
    t = OffsetTracker()
    for o in (10, 11, 12):
        t.started(P, o)
    assert t.finished(P, 12) is None  # 10 and 11 still running
    assert t.finished(P, 10) == 11
    assert t.finished(P, 11) == 13
    assert t.in_flight() == 0


@given(st.permutations(list(range(20))))
def test_any_finish_order_commits_everything_once(order: list[int]) -> None:
    t = OffsetTracker()
    for o in range(20):
        t.started(P, o)
    commits = [c for c in (t.finished(P, o) for o in order) if c is not None]
    assert commits == sorted(commits) and commits[-1] == 20
    assert t.in_flight() == 0


@given(st.permutations(list(range(12))))
def test_never_commits_past_an_unfinished_gop(order: list[int]) -> None:
    t = OffsetTracker()
    for o in range(12):
        t.started(P, o)
    done: set[int] = set()
    for o in order:
        done.add(o)
        commit = t.finished(P, o)
        if commit is not None:
            assert set(range(commit)) <= done
