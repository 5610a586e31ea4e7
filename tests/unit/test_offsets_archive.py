"""The consumer-group offsets snapshot: merge and clamp rules, and the file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from topics.errors import ArchiveError
from topics.offsets_archive import OFFSETS_FILE, GroupOffsets, OffsetsFile, clamp, decode, encode, merge

G = ("media.gops", 0)
G1 = ("media.gops", 1)
S = ("media.segments", 0)


def test_reported_offsets_replace_the_snapshot_and_unreported_ones_are_kept() -> None:
    previous = {"glasscast-transcode": {G: 10, G1: 4}, "views": {S: 7}}
    observed = {"glasscast-transcode": {G: 12}, "chat-archiver": {("chat.messages", 2): 3}}
    assert merge(previous, observed) == {
        "glasscast-transcode": {G: 12, G1: 4},  # G1 not reported: kept
        "views": {S: 7},  # ListGroups leaves out a group that was only restored: kept
        "chat-archiver": {("chat.messages", 2): 3},
    }


def test_a_lower_offset_the_group_committed_wins() -> None:
    # The group itself reset: keeping 10 would skip offsets 2..9 it asked to read again.
    assert merge({"g": {G: 10}}, {"g": {G: 2}}) == {"g": {G: 2}}


def test_no_committed_offset_is_not_a_reset() -> None:
    assert merge({"g": {G: 10}}, {"g": {G: -1001}, "new": {G: -1001}}) == {"g": {G: 10}}


def test_merge_leaves_its_inputs_alone() -> None:
    previous: GroupOffsets = {"g": {G: 1}}
    merge(previous, {"g": {G: 5}})
    assert previous == {"g": {G: 1}}


def test_clamp_to_each_partitions_end_and_drop_partitions_that_are_gone() -> None:
    offsets = {"g": {G: 120, G1: 30, S: 5}, "gone": {("deleted", 0): 4}, "neg": {G: -1}}
    ends = {G: 100, G1: 30, S: 9}
    assert clamp(offsets, ends) == {"g": {G: 100, G1: 30, S: 5}}


Commits = st.lists(st.tuples(st.integers(0, 2), st.integers(0, 50), st.booleans()), max_size=40)


@given(Commits, st.integers(0, 500))
def test_a_restore_never_skips_what_the_group_has_not_processed(commits: list[tuple[int, int, bool]],
                                                                 archived_end: int) -> None:
    """A group commits forward on 3 partitions; a snapshot sees each commit or not (not listed).

    What was committed after the last snapshot only makes the restore lag: it is never ahead of
    the group's last commit, nor past the end, and every partition a snapshot saw is restored.
    """
    tps = [("t", p) for p in range(3)]
    snapshot: GroupOffsets = {}
    committed: dict[tuple[str, int], int] = {}
    for p, step, seen in commits:
        committed[tps[p]] = committed.get(tps[p], 0) + step
        if seen:
            snapshot = merge(snapshot, {"g": dict(committed)})
    restored = clamp(snapshot, dict.fromkeys(tps, archived_end)).get("g", {})
    for tp, offset in restored.items():
        assert offset <= min(committed[tp], archived_end)
    for tp in {tps[p] for p, _, seen in commits if seen}:
        assert tp in restored


def test_the_file_round_trips_and_is_replaced_whole(tmp_path: Path) -> None:
    store = OffsetsFile(tmp_path)
    assert store.load() == {}
    offsets = {"g": {G: 10, G1: 0, S: 3}, "h": {("chat.messages", 2): 9}}
    store.save(offsets)
    assert store.load() == offsets
    store.save({"g": {G: 11}})
    assert store.load() == {"g": {G: 11}}
    assert sorted(p.name for p in tmp_path.iterdir()) == [OFFSETS_FILE]  # no temporary file left
    doc = json.loads((tmp_path / OFFSETS_FILE).read_text())
    assert doc == {"format": 1, "groups": {"g": {"media.gops": {"0": 11}}}}


def test_equal_snapshots_give_equal_files() -> None:
    assert encode({"b": {G1: 1, G: 2}, "a": {S: 3}}) == encode({"a": {S: 3}, "b": {G: 2, G1: 1}})


@pytest.mark.parametrize("text", ["", "{", "[]", '{"format": 2, "groups": {}}', '{"format": 1}',
                                  '{"format": 1, "groups": {"g": {"t": {"x": 1}}}}'])
def test_a_malformed_file_is_an_archive_error(text: str, tmp_path: Path) -> None:
    with pytest.raises(ArchiveError):
        decode(text)
    (tmp_path / OFFSETS_FILE).write_text(text)
    with pytest.raises(ArchiveError, match=OFFSETS_FILE):
        OffsetsFile(tmp_path).load()
