"""GopSplitter semantics on synthetic tags, and gop_to_flv's file layout."""

from __future__ import annotations

import pytest

from media.ingest import flv
from media.ingest.gop import Gop, GopSplitter, MediaTag, gop_to_flv

VCFG = b"\x17\x00\x00\x00\x00video-config"
ACFG = b"\xaf\x00\x12\x10"


def v(ts: int, key: bool = False) -> MediaTag:
    return MediaTag("video", ts, (b"\x17" if key else b"\x27") + b"v%d" % ts, keyframe=key)


def a(ts: int) -> MediaTag:
    return MediaTag("audio", ts, b"\xaf\x01a%d" % ts)


def vcfg(ts: int = 0, body: bytes = VCFG) -> MediaTag:
    return MediaTag("video", ts, body, config=True)


def acfg(ts: int = 0) -> MediaTag:
    return MediaTag("audio", ts, ACFG, config=True)


def push_all(splitter: GopSplitter, tags: list[MediaTag]) -> list[Gop]:
    return [gop for tag in tags for gop in splitter.push(tag)]


def video(fps_ms: int, start: int, count: int, keyint: int) -> list[MediaTag]:
    return [v(start + i * fps_ms, key=i % keyint == 0) for i in range(count)]


def times(gop: Gop, kind: str) -> list[int]:
    return [t.timestamp_ms for t in gop.tags if t.kind == kind]


def test_gop_runs_from_keyframe_to_keyframe() -> None:
    s = GopSplitter()
    gops = push_all(s, [vcfg(), *video(100, 0, 25, keyint=10)])
    assert [(g.start_ms, g.duration_ms, g.video_frames) for g in gops] == [(0, 1000, 10), (1000, 1000, 10)]
    assert gops[0].tags[0].keyframe and not any(t.keyframe for t in gops[0].tags[1:])
    assert gops[0].video_config == VCFG and gops[0].audio_config is None
    last = s.flush()
    assert last is not None and (last.start_ms, last.video_frames) == (2000, 5)
    assert last.duration_ms == 400 + 100  # last - first + the median frame interval
    assert s.flush() is None
    assert s.dropped_frames == 0 and s.oversize_cuts == 0


def test_config_tags_are_not_frames() -> None:
    s = GopSplitter()
    push_all(s, [vcfg(), acfg(), v(0, key=True), acfg(10), vcfg(20)])
    gop = s.flush()
    assert gop is not None and (gop.video_frames, gop.audio_frames, len(gop.tags)) == (1, 0, 1)


def test_frames_before_first_keyframe_or_config_are_dropped() -> None:
    s = GopSplitter()
    # A keyframe before any video config cannot be decoded either.
    tags = [a(0), v(0, key=True), v(33), acfg(40), a(40), vcfg(50), v(66), a(80), v(100, key=True), a(120)]
    assert push_all(s, tags) == []
    assert s.dropped_frames == 6  # a0, v0, v33, a40, v66, and a80 (before the keyframe at 100)
    gop = s.flush()
    assert gop is not None and gop.start_ms == 100 and times(gop, "audio") == [120]


def test_audio_belongs_to_the_gop_containing_its_time() -> None:
    s = GopSplitter()
    tags = [vcfg(), acfg(), v(0, key=True), a(0), a(21), v(500), a(490), a(990),
            a(1000), a(1010),  # ahead of the keyframe at 1000: next GOP
            v(1000, key=True), a(1030), v(1500)]
    gops = push_all(s, tags)
    assert len(gops) == 1
    assert times(gops[0], "audio") == [0, 21, 490, 990] and gops[0].audio_frames == 4
    assert gops[0].audio_config == ACFG
    nxt = s.flush()
    assert nxt is not None and times(nxt, "audio") == [1000, 1010, 1030] and times(nxt, "video") == [1000, 1500]
    assert s.late_audio == 0


def test_late_audio_stays_in_the_open_gop() -> None:
    s = GopSplitter()
    gops = push_all(s, [vcfg(), v(0, key=True), a(0), v(1000, key=True), a(990)])
    assert times(gops[0], "audio") == [0]
    nxt = s.flush()
    assert nxt is not None and times(nxt, "audio") == [990] and s.late_audio == 1


def test_audio_config_after_the_keyframe_is_adopted() -> None:
    s = GopSplitter()
    push_all(s, [vcfg(), v(0, key=True), acfg(5), a(5)])
    gop = s.flush()
    assert gop is not None and gop.audio_config == ACFG


def test_oversize_gop_is_cut_by_time() -> None:
    s = GopSplitter(max_gop_ms=1000)
    gops = push_all(s, [vcfg(), *video(100, 0, 40, keyint=30)])
    assert [(g.start_ms, g.duration_ms, g.video_frames) for g in gops] == [(0, 1000, 10)]
    assert s.oversize_cuts == 1
    assert s.dropped_frames == 20  # 1000..2900: they reference the cut GOP's pictures
    last = s.flush()
    assert last is not None and last.start_ms == 3000 and last.tags[0].keyframe


def test_oversize_gop_is_cut_by_bytes() -> None:
    s = GopSplitter(max_gop_bytes=100)
    big = [MediaTag("video", i * 10, bytes(30), keyframe=i % 8 == 0) for i in range(10)]
    gops = push_all(s, [vcfg(), *big])
    assert [(g.start_ms, g.video_frames) for g in gops] == [(0, 3)]
    assert sum(len(t.payload) for t in gops[0].tags) <= 100
    assert (s.oversize_cuts, s.dropped_frames) == (1, 5)
    last = s.flush()
    assert last is not None and last.start_ms == 80


def test_preroll_audio_is_bounded_without_video() -> None:
    s = GopSplitter(max_gop_ms=1000)
    push_all(s, [acfg(), *[a(i * 20) for i in range(500)]])
    assert len(s._preroll) <= 51 and s.dropped_frames >= 449


def test_timestamps_unwrap_across_2_32() -> None:
    start = 2**32 - 250
    s = GopSplitter()
    tags = [vcfg(start)]
    for i in range(8):
        raw = (start + i * 100) % 2**32
        tags += [v(raw, key=i % 4 == 0), a(raw)]
    gops = push_all(s, tags)
    assert [(g.start_ms, g.duration_ms) for g in gops] == [(start, 400)]
    last = s.flush()
    assert last is not None and last.start_ms == start + 400 == 2**32 + 150
    assert times(last, "video") == [2**32 + 150 + i * 100 for i in range(4)]
    # FLV times are 32-bit: the file carries the wrapped times the encoder sent.
    written = [ts for tt, ts, _ in flv.iter_file_tags(gop_to_flv(last)) if tt == 9]
    assert written[1:] == [150, 250, 350, 450]


def test_config_change_applies_from_the_next_keyframe() -> None:
    s = GopSplitter()
    new = VCFG + b"-v2"
    gops = push_all(s, [vcfg(), v(0, key=True), v(100), vcfg(150, new), v(200), v(300, key=True), v(400)])
    assert gops[0].video_config == VCFG and gops[0].video_frames == 3
    last = s.flush()
    assert last is not None and last.video_config == new


def test_metadata_goes_to_gops_started_after_it() -> None:
    s = GopSplitter()
    push_all(s, [vcfg(), v(0, key=True)])
    s.set_metadata(b"\x02\x00\x0aonMetaData")
    (first,) = push_all(s, [v(100, key=True)])
    assert first.metadata is None
    last = s.flush()
    assert last is not None and last.metadata == b"\x02\x00\x0aonMetaData"


def test_limits_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        GopSplitter(max_gop_ms=0)


def test_media_tag_rejects_contradictions() -> None:
    with pytest.raises(ValueError, match="keyframe"):
        MediaTag("audio", 0, b"", keyframe=True)
    with pytest.raises(ValueError, match="kind"):
        MediaTag("text", 0, b"")  # type: ignore[arg-type]


@pytest.mark.parametrize(("kind", "payload", "keyframe", "config", "aux"), [
    ("video", b"\x17\x00\x00\x00\x00\x01avcC", False, True, False),  # AVC sequence header
    ("video", b"\x17\x01\x00\x00\x00idr", True, False, False),
    ("video", b"\x27\x01\x00\x00\x21p", False, False, False),
    ("video", b"\x17\x02\x00\x00\x00", False, False, True),  # AVC end of sequence
    ("video", b"\x57\x00", False, False, True),  # video info/command frame
    ("audio", b"\xaf\x00\x12\x10", False, True, False),  # AudioSpecificConfig
    ("audio", b"\xaf\x01raw", False, False, False),
    ("audio", b"\xaf\x07", False, False, True),
])
def test_from_payload_classifies(kind: str, payload: bytes, keyframe: bool, config: bool, aux: bool) -> None:
    tag = MediaTag.from_payload(kind, 7, payload)  # type: ignore[arg-type]
    assert (tag.keyframe, tag.config, tag.aux, tag.frame) == (keyframe, config, aux, not (config or aux))
    assert (tag.timestamp_ms, tag.payload) == (7, payload)


def test_from_payload_raises_the_parse_error() -> None:
    with pytest.raises(ValueError, match="empty"):
        MediaTag.from_payload("video", 0, b"")


def test_gop_to_flv_layout() -> None:
    gop = Gop(start_ms=5000, duration_ms=200, video_config=VCFG, audio_config=ACFG,
              tags=(a(4990), v(5000, key=True), a(5010), v(5100)), video_frames=2, audio_frames=2,
              metadata=b"\x02\x00\x0aonMetaData")
    data = gop_to_flv(gop)
    assert data.startswith(flv.file_header(has_audio=True, has_video=True))
    tags = list(flv.iter_file_tags(data))
    assert [(tt, ts) for tt, ts, _ in tags] == [
        (18, 0), (9, 4990), (8, 4990), (8, 4990), (9, 5000), (8, 5010), (9, 5100)]
    assert [body for _, _, body in tags[3:]] == [t.payload for t in gop.tags]
    assert tags[1][2] == VCFG and tags[2][2] == ACFG
