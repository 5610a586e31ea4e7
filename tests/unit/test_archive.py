"""The topic archive: round trip, offsets, torn tails, topics.json, standard readers."""

from __future__ import annotations

import json
import os
from pathlib import Path

import fastavro
import pytest

from topics.archive import Archive, ArchivedRecord, ArchiveWriter, TopicInfo
from topics.errors import ArchiveError


def rec(offset: int, partition: int = 0, topic: str = "chat.messages", **kw: object) -> ArchivedRecord:
    fields: dict[str, object] = {
        "timestamp_ms": 1_700_000_000_000 + offset, "timestamp_type": 1, "key": b"k%d" % offset,
        "value": b"\x00\x00\x00\x00\x01" + bytes([offset % 256]) * 40, "headers": (("trace", b"t%d" % offset),),
    }
    fields.update(kw)
    return ArchivedRecord(topic, partition, offset, **fields)  # type: ignore[arg-type]


def test_round_trip_keeps_every_field(tmp_path: Path) -> None:
    odd = [
        rec(0, key=None, headers=()),
        rec(1, value=None),
        rec(2, key=b"", value=b"", headers=(("h", b"x"), ("n", None), ("h", b""))),
        rec(3, timestamp_ms=-1, timestamp_type=0),
    ]
    with ArchiveWriter(tmp_path) as w:
        assert w.append(odd) == 4
        assert w.pending == 4
        assert w.flush() == 4
        assert w.pending == 0
    assert list(Archive(tmp_path).iter_partition("chat.messages", 0)) == odd


def test_partitions_and_topics_are_separate(tmp_path: Path) -> None:
    w = ArchiveWriter(tmp_path)
    w.append([rec(o, p, t) for o in range(5) for t in ("a", "b.c") for p in range(3)])
    w.close()
    a = Archive(tmp_path)
    assert [r.offset for r in a.iter_partition("b.c", 2)] == [0, 1, 2, 3, 4]
    assert {r.partition for r in a.iter_partition("a", 1)} == {1}
    assert a.topics() == {"a": TopicInfo(3), "b.c": TopicInfo(3)}
    assert list(a.iter_partition("missing", 0)) == []


def test_next_offset_and_duplicates(tmp_path: Path) -> None:
    w = ArchiveWriter(tmp_path)
    assert w.next_offset("t", 0) == 0
    w.append([rec(o, topic="t") for o in range(10)])
    assert w.next_offset("t", 0) == 10  # pending counts: the archiver resumes after it
    w.flush()
    assert w.append([rec(o, topic="t") for o in range(5, 12)]) == 2  # 5..9 were there already
    w.close()
    assert Archive(tmp_path).next_offset("t", 0) == 12
    with ArchiveWriter(tmp_path) as again:
        assert again.next_offset("t", 0) == 12
    assert [r.offset for r in Archive(tmp_path).iter_partition("t", 0, start_offset=7)] == [7, 8, 9, 10, 11]


def test_flush_writes_one_block_standard_readers_accept(tmp_path: Path) -> None:
    w = ArchiveWriter(tmp_path)
    for start in (0, 3, 6):
        w.append([rec(o) for o in range(start, start + 3)])
        w.flush()
    w.close()
    (path,) = Archive(tmp_path).segments("chat.messages", 0)
    with open(path, "rb") as f:
        blocks = list(fastavro.block_reader(f))
    assert [b.num_records for b in blocks] == [3, 3, 3]
    with open(path, "rb") as f:
        reader = fastavro.reader(f)
        assert reader.writer_schema["name"] == "glasscast.ops.ArchivedRecord"  # type: ignore[index,call-overload]
        assert [r["offset"] for r in reader] == list(range(9))  # type: ignore[index,call-overload]


def test_segments_roll_by_size(tmp_path: Path) -> None:
    w = ArchiveWriter(tmp_path, segment_bytes=2_000)
    for start in range(0, 100, 10):
        w.append([rec(o) for o in range(start, start + 10)])
        w.flush()
    w.close()
    a = Archive(tmp_path)
    segs = a.segments("chat.messages", 0)
    assert len(segs) > 2
    assert [int(p.stem) for p in segs] == sorted(int(p.stem) for p in segs)
    assert int(segs[0].stem) == 0
    assert [r.offset for r in a.iter_partition("chat.messages", 0)] == list(range(100))
    assert [r.offset for r in a.iter_partition("chat.messages", 0, start_offset=95)] == list(range(95, 100))
    assert a.next_offset("chat.messages", 0) == 100


@pytest.mark.parametrize("cut", [1, 7, 30, -17, -1])
def test_torn_last_block_is_skipped_then_truncated(tmp_path: Path, cut: int) -> None:
    w = ArchiveWriter(tmp_path)
    w.append([rec(o) for o in range(5)])
    w.flush()
    (path,) = w.segments("chat.messages", 0)
    good_size = path.stat().st_size
    w.append([rec(o) for o in range(5, 10)])
    w.close()
    full_size = path.stat().st_size
    # A crash in the middle of the second block: keep ``cut`` bytes of it (or all but -cut).
    torn = good_size + cut if cut > 0 else full_size + cut
    os.truncate(path, torn)

    a = Archive(tmp_path)
    assert [r.offset for r in a.iter_partition("chat.messages", 0)] == list(range(5))
    assert a.next_offset("chat.messages", 0) == 5
    assert path.stat().st_size == torn  # readers never modify files

    with ArchiveWriter(tmp_path) as w2:
        assert w2.next_offset("chat.messages", 0) == 5
        w2.append([rec(o) for o in range(5, 8)])
    assert [r.offset for r in a.iter_partition("chat.messages", 0)] == list(range(8))
    with open(path, "rb") as f:
        assert [r["offset"] for r in fastavro.reader(f)] == list(range(8))  # type: ignore[index,call-overload]


def test_zero_filled_tail_and_torn_header(tmp_path: Path) -> None:
    w = ArchiveWriter(tmp_path, segment_bytes=1)  # every flush starts a new file
    w.append([rec(0), rec(1)])
    w.flush()
    w.append([rec(2)])
    w.close()
    first, second = w.segments("chat.messages", 0)
    with open(first, "ab") as f:
        f.write(b"\x00" * 64)  # file size grew but the data never reached the disk
    os.truncate(second, 3)  # crashed while writing the new file's header
    assert [r.offset for r in Archive(tmp_path).iter_partition("chat.messages", 0)] == [0, 1]
    with ArchiveWriter(tmp_path) as w2:
        assert w2.next_offset("chat.messages", 0) == 2
        w2.append([rec(2), rec(3)])
    assert [r.offset for r in Archive(tmp_path).iter_partition("chat.messages", 0)] == [0, 1, 2, 3]


def test_open_files_are_bounded(tmp_path: Path) -> None:
    w = ArchiveWriter(tmp_path, max_open_files=4)
    for round_ in range(3):
        w.append([rec(round_, p, "wide") for p in range(20)])
        w.flush()
        assert len(w._files) <= 4
    w.close()
    a = Archive(tmp_path)
    assert all([r.offset for r in a.iter_partition("wide", p)] == [0, 1, 2] for p in range(20))


def test_topics_json_is_written_atomically_and_merged(tmp_path: Path) -> None:
    with ArchiveWriter(tmp_path) as w:
        assert w.set_topics({"social.follows": TopicInfo(3, {"cleanup.policy": "compact"})})
        assert not w.set_topics({"social.follows": TopicInfo(3, {"cleanup.policy": "compact"})})
        assert w.set_topics({"users": TopicInfo(1)})
        assert w.set_topics({"users": TopicInfo(6, {"retention.ms": "-1"})})
    doc = json.loads((tmp_path / "topics.json").read_text())
    assert doc["topics"]["social.follows"] == {"partitions": 3, "config": {"cleanup.policy": "compact"}}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["topics.json"]  # no temporary left behind
    assert Archive(tmp_path).topics() == {
        "social.follows": TopicInfo(3, {"cleanup.policy": "compact"}),
        "users": TopicInfo(6, {"retention.ms": "-1"}),
    }
    with ArchiveWriter(tmp_path) as again:
        assert again.set_topics({"users": TopicInfo(6, {"retention.ms": "-1"})}) is False


def test_malformed_topics_json_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "topics.json").write_text("{not json")
    with pytest.raises(ArchiveError, match="topics.json"):
        Archive(tmp_path).topics()
