from __future__ import annotations

import pytest

from media.package.playlist import (
    LowLatency,
    ParsedSegment,
    SegmentEntry,
    VariantInfo,
    parse_master_playlist,
    parse_media_playlist,
    render_master,
    render_media,
)

T0 = 1_700_000_000_000  # 2023-11-14T22:13:20.000Z


def gops(*seqs: int, duration_ms: int = 2000, flagged: tuple[int, ...] = ()) -> list[SegmentEntry]:
    """Back-to-back segments, ``seq`` n starting at T0 + n * duration."""
    return [
        SegmentEntry(s, duration_ms, f"{s}.m4s", T0 + s * duration_ms, discontinuity=s in flagged) for s in seqs
    ]


LADDER = [
    VariantInfo("480p30", "480p30/index.m3u8", 1_600_000, 1_400_000, "avc1.4d401e,mp4a.40.2", 852, 480, 30.0),
    VariantInfo("audio_only", "audio_only/index.m3u8", 160_000, 128_000, "mp4a.40.2", audio_only=True),
    VariantInfo("1080p60", "1080p60/index.m3u8", 6_500_000, 6_000_000, "avc1.64002a,mp4a.40.2", 1920, 1080, 60.0),
    VariantInfo("720p30", "720p30/index.m3u8", 3_200_000, 3_000_000, "avc1.4d401f,mp4a.40.2", 1280, 720, 29.97),
]


def test_master_lists_the_best_variant_first_and_audio_only_plainly() -> None:
    assert render_master(LADDER) == (
        "#EXTM3U\n"
        "#EXT-X-VERSION:7\n"
        "#EXT-X-INDEPENDENT-SEGMENTS\n"
        '#EXT-X-STREAM-INF:BANDWIDTH=6500000,AVERAGE-BANDWIDTH=6000000,CODECS="avc1.64002a,mp4a.40.2",'
        "RESOLUTION=1920x1080,FRAME-RATE=60.000\n"
        "1080p60/index.m3u8\n"
        '#EXT-X-STREAM-INF:BANDWIDTH=3200000,AVERAGE-BANDWIDTH=3000000,CODECS="avc1.4d401f,mp4a.40.2",'
        "RESOLUTION=1280x720,FRAME-RATE=29.970\n"
        "720p30/index.m3u8\n"
        '#EXT-X-STREAM-INF:BANDWIDTH=1600000,AVERAGE-BANDWIDTH=1400000,CODECS="avc1.4d401e,mp4a.40.2",'
        "RESOLUTION=852x480,FRAME-RATE=30.000\n"
        "480p30/index.m3u8\n"
        '#EXT-X-STREAM-INF:BANDWIDTH=160000,AVERAGE-BANDWIDTH=128000,CODECS="mp4a.40.2"\n'
        "audio_only/index.m3u8\n"
    )


def test_master_parses_back() -> None:
    parsed = parse_master_playlist(render_master(LADDER))
    assert [v["URI"] for v in parsed] == [
        "1080p60/index.m3u8", "720p30/index.m3u8", "480p30/index.m3u8", "audio_only/index.m3u8"
    ]
    assert parsed[0]["CODECS"] == "avc1.64002a,mp4a.40.2" and parsed[0]["RESOLUTION"] == "1920x1080"
    assert parsed[3] == {
        "BANDWIDTH": "160000", "AVERAGE-BANDWIDTH": "128000", "CODECS": "mp4a.40.2", "URI": "audio_only/index.m3u8"
    }


def test_master_keeps_the_callers_order_for_equal_bandwidths() -> None:
    a = VariantInfo("a", "a.m3u8", 1000, 1000, "mp4a.40.2", audio_only=True)
    b = VariantInfo("b", "b.m3u8", 1000, 900, "mp4a.40.5", audio_only=True)
    assert [v["URI"] for v in parse_master_playlist(render_master([b, a]))] == ["b.m3u8", "a.m3u8"]


def test_master_needs_a_variant() -> None:
    with pytest.raises(ValueError, match="at least one variant"):
        render_master([])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"uri": "#x.m3u8"}, "not a valid playlist URI"),
        ({"uri": "a b.m3u8"}, "not a valid playlist URI"),
        ({"codecs": 'avc1"'}, "codecs is not a valid"),
        ({"average_bandwidth_bps": 7_000_000}, "average_bandwidth_bps <= bandwidth_bps"),
        ({"average_bandwidth_bps": 0}, "average_bandwidth_bps <= bandwidth_bps"),
        ({"height": None}, "width and height"),
        ({"width": 0}, "width and height"),
        ({"fps": 0.0}, "fps must be positive"),
        ({"fps": float("nan")}, "fps must be positive"),
        ({"audio_only": True}, "audio-only variant has no width"),
    ],
)
def test_variant_info_refuses_what_cannot_be_written(kwargs: dict[str, object], message: str) -> None:
    fields: dict[str, object] = {
        "name": "1080p60", "uri": "1080p60/index.m3u8", "bandwidth_bps": 6_500_000,
        "average_bandwidth_bps": 6_000_000, "codecs": "avc1.64002a", "width": 1920, "height": 1080, "fps": 60.0,
    }
    with pytest.raises(ValueError, match=message):
        VariantInfo(**{**fields, **kwargs})  # type: ignore[arg-type]


def test_live_playlist_is_the_last_window_segments() -> None:
    assert render_media(gops(0, 1, 2, 3, 4), init_uri="init.mp4", ended=False, window=3) == (
        "#EXTM3U\n"
        "#EXT-X-VERSION:7\n"
        "#EXT-X-TARGETDURATION:2\n"
        "#EXT-X-MEDIA-SEQUENCE:2\n"
        "#EXT-X-DISCONTINUITY-SEQUENCE:0\n"
        "#EXT-X-INDEPENDENT-SEGMENTS\n"
        '#EXT-X-MAP:URI="init.mp4"\n'
        "#EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:24.000Z\n"
        "#EXTINF:2.000,\n"
        "2.m4s\n"
        "#EXTINF:2.000,\n"
        "3.m4s\n"
        "#EXTINF:2.000,\n"
        "4.m4s\n"
    )


def test_vod_playlist_lists_everything_and_ends() -> None:
    segments = [*gops(0, 1), SegmentEntry(2, 1500, "2.m4s", T0 + 60_000, discontinuity=True)]
    assert render_media(segments, init_uri="init.mp4", ended=True, window=1) == (
        "#EXTM3U\n"
        "#EXT-X-VERSION:7\n"
        "#EXT-X-TARGETDURATION:2\n"
        "#EXT-X-MEDIA-SEQUENCE:0\n"
        "#EXT-X-DISCONTINUITY-SEQUENCE:0\n"
        "#EXT-X-PLAYLIST-TYPE:VOD\n"
        "#EXT-X-INDEPENDENT-SEGMENTS\n"
        '#EXT-X-MAP:URI="init.mp4"\n'
        "#EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:20.000Z\n"
        "#EXTINF:2.000,\n"
        "0.m4s\n"
        "#EXTINF:2.000,\n"
        "1.m4s\n"
        "#EXT-X-DISCONTINUITY\n"
        "#EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:14:20.000Z\n"
        "#EXTINF:1.500,\n"
        "2.m4s\n"
        "#EXT-X-ENDLIST\n"
    )


def test_a_discontinuity_at_the_window_start_moves_into_the_sequence() -> None:
    history = gops(0, 1, 2, 3, 4, flagged=(3,))
    before = parse_media_playlist(render_media(history, init_uri="i.mp4", ended=False, window=3))
    after = parse_media_playlist(render_media(history, init_uri="i.mp4", ended=False, window=2))
    assert before.discontinuity_sequence == 0 and before.segments[1].discontinuity
    assert after.discontinuity_sequence == 1 and not any(s.discontinuity for s in after.segments)
    # Segment 3 keeps its Discontinuity Sequence Number as segment 2 slides out.
    assert before.segments[1].discontinuity_sequence == after.segments[0].discontinuity_sequence == 1


def test_discontinuities_before_counts_a_trimmed_history() -> None:
    text = render_media(gops(10, 11, flagged=(11,)), init_uri="i.mp4", ended=False, discontinuities_before=4)
    assert "#EXT-X-DISCONTINUITY-SEQUENCE:4\n" in text and text.count("#EXT-X-DISCONTINUITY\n") == 1


def test_a_missing_gop_becomes_a_gap_segment_and_keeps_the_numbering() -> None:
    text = render_media(gops(5, 6, 8, 9), init_uri="init.mp4", ended=False, window=3)
    assert text.split("#EXT-X-MAP:URI=\"init.mp4\"\n")[1] == (
        "#EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:32.000Z\n"
        "#EXTINF:2.000,\n"
        "6.m4s\n"
        "#EXTINF:2.000,\n"
        "#EXT-X-GAP\n"
        "6.m4s\n"
        "#EXTINF:2.000,\n"
        "8.m4s\n"
        "#EXTINF:2.000,\n"
        "9.m4s\n"
    )
    parsed = parse_media_playlist(text)
    assert parsed.media_sequence == 6
    assert [(s.media_sequence, s.gap) for s in parsed.segments] == [(6, False), (7, True), (8, False), (9, False)]
    assert parsed.discontinuity_sequence == 0 and not any(s.discontinuity for s in parsed.segments)


def test_a_gap_shares_out_the_hole_and_falls_back_on_a_clock_jump() -> None:
    hole = [SegmentEntry(0, 2000, "0.m4s", T0), SegmentEntry(3, 2000, "3.m4s", T0 + 2000 + 3001)]
    durations = [s.duration_ms for s in parse_media_playlist(render_media(hole, init_uri="i", ended=True)).segments]
    assert durations == [2000, 1501, 1500, 2000]
    jump = [SegmentEntry(0, 2000, "0.m4s", T0), SegmentEntry(2, 2000, "2.m4s", T0 + 3_600_000)]
    text = render_media(jump, init_uri="i", ended=True)
    assert "#EXT-X-TARGETDURATION:2\n" in text
    parsed = parse_media_playlist(text)
    assert [s.duration_ms for s in parsed.segments] == [2000, 2000, 2000]
    assert parsed.segments[2].program_date_time_ms == T0 + 3_600_000


def test_program_date_time_is_repeated_where_the_clock_drifts() -> None:
    drifting = [SegmentEntry(0, 2000, "0.m4s", T0), SegmentEntry(1, 2000, "1.m4s", T0 + 2033)]
    text = render_media(drifting, init_uri="i", ended=False)
    assert text.count("#EXT-X-PROGRAM-DATE-TIME:") == 2 and "2023-11-14T22:13:22.033Z" in text


def test_map_is_repeated_only_where_the_init_segment_changes() -> None:
    segments = [*gops(0, 1), SegmentEntry(2, 2000, "2.m4s", T0 + 4000, discontinuity=True, init_uri="init-2.mp4")]
    text = render_media(segments, init_uri="init.mp4", ended=False)
    assert text.count("#EXT-X-MAP:") == 2
    assert "#EXT-X-DISCONTINUITY\n#EXT-X-MAP:URI=\"init-2.mp4\"\n" in text
    assert [s.map_uri for s in parse_media_playlist(text).segments] == ["init.mp4", "init.mp4", "init-2.mp4"]


@pytest.mark.parametrize(
    ("durations_ms", "given_s", "target_s"),
    [
        ([2000, 2499], None, 2),  # 2.499 rounds to 2
        ([2000, 2500], None, 3),  # halves round up
        ([400, 300], None, 1),  # never 0
        ([2000], 6, 6),  # a live playlist's earlier target is kept
        ([7600], 6, 8),
    ],
)
def test_target_duration(durations_ms: list[int], given_s: int | None, target_s: int) -> None:
    segments = [SegmentEntry(i, d, f"{i}.m4s", T0) for i, d in enumerate(durations_ms)]
    text = render_media(segments, init_uri="i", ended=False, target_duration_s=given_s)
    assert parse_media_playlist(text).target_duration_s == target_s


def test_low_latency_header_tags() -> None:
    text = render_media(gops(0), init_uri="i", ended=False, low_latency=LowLatency(334, None))
    assert (
        "#EXT-X-TARGETDURATION:2\n"
        "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=1.002,HOLD-BACK=6.000,CAN-SKIP-UNTIL=12.000\n"
        "#EXT-X-PART-INF:PART-TARGET=0.334\n"
        "#EXT-X-MEDIA-SEQUENCE:0\n"
    ) in text


@pytest.mark.parametrize(
    ("segments", "kwargs", "message"),
    [
        ([], {}, "at least one segment"),
        (gops(1, 1), {}, "seq 1 after 1: duplicate"),
        (gops(2, 1), {}, "seq 1 after 2: out of order"),
        (gops(1), {"window": 0}, "window"),
        (gops(1), {"target_duration_s": 0}, "target_duration_s"),
        (gops(1), {"discontinuities_before": -1}, "discontinuities_before"),
        (gops(1), {"low_latency": LowLatency(2001, None)}, "part_target_ms 2001 is longer than the target"),
        (gops(1), {"init_uri": 'a"b'}, "init_uri is not a valid"),
        (gops(0, 1802), {}, "1801 segments missing between seq 0 and 1802"),
    ],
)
def test_render_media_refuses(segments: list[SegmentEntry], kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        render_media(segments, **{"init_uri": "i", "ended": False, **kwargs})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"seq": -1}, "outside 0..2\\*\\*64-1"),
        ({"seq": 2**64}, "outside"),
        ({"duration_ms": 0}, "duration_ms must be > 0"),
        ({"program_date_time_ms": -1}, "the others >= 0"),
        ({"uri": ""}, "uri is not a valid"),
        ({"uri": "a\nb"}, "uri is not a valid"),
        ({"init_uri": "x y"}, "init_uri is not a valid"),
    ],
)
def test_segment_entry_refuses(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SegmentEntry(**{"seq": 0, "duration_ms": 2000, "uri": "0.m4s", "program_date_time_ms": 0, **kwargs})  # type: ignore[arg-type]


def test_parser_reads_a_foreign_playlist() -> None:
    text = (
        "#EXTM3U\r\n#EXT-X-TARGETDURATION:6\r\n# a comment\r\n#EXT-X-MEDIA-SEQUENCE:41\r\n"
        "#EXT-X-DISCONTINUITY-SEQUENCE:3\r\n#EXT-X-UNKNOWN:whatever\r\n"
        "#EXT-X-PROGRAM-DATE-TIME:2023-11-14T23:13:20.5+01:00\r\n#EXTINF:5.0005,title, with comma\r\na.ts\r\n"
        "\r\n#EXT-X-DISCONTINUITY\r\n#EXTINF:6,\r\nb.ts\r\n#EXTINF:4,\r\nc.ts\r\n#EXT-X-ENDLIST\r\n"
    )
    parsed = parse_media_playlist(text)
    assert (parsed.target_duration_s, parsed.media_sequence, parsed.discontinuity_sequence) == (6, 41, 3)
    assert parsed.ended and parsed.playlist_type is None and parsed.map_uri is None
    assert parsed.segments == (
        ParsedSegment(41, "a.ts", 5000, False, 3, T0 + 500, None),
        ParsedSegment(42, "b.ts", 6000, True, 4, None, None),  # a date does not cross a discontinuity
        ParsedSegment(43, "c.ts", 4000, False, 4, None, None),
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", r"^line 1: a playlist must start with #EXTM3U"),
        ("\ufeff#EXTM3U\n", r"^line 1: a playlist must start with #EXTM3U"),
        ("#EXTM3U\na.ts\n", r"^line 2: segment URI 'a.ts' without #EXTINF$"),
        ("#EXTM3U\n#EXTINF:2.0,\n", r"^end of playlist: #EXTINF without a segment URI$"),
        ("#EXTM3U\n#EXTINF:-1,\na.ts\n", r"^line 2: '-1' is not a decimal-floating-point"),
        ("#EXTM3U\n#EXT-X-TARGETDURATION:2.5\n", r"^line 2: '2.5' is not a decimal-integer"),
        ("#EXTM3U\n#EXT-X-MEDIA-SEQUENCE:1" + "0" * 20 + "\n", r"^line 2: '10+' is not a decimal-integer"),
        ("#EXTM3U\n#EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:20\n", r"^line 2: .* with a zone"),
        ("#EXTM3U\n#EXTINF:2,\na.ts\n#EXT-X-MEDIA-SEQUENCE:3\n", r"^line 4: #EXT-X-MEDIA-SEQUENCE after the first"),
        ("#EXTM3U\n#EXT-X-MAP:URI=\"a\",,\n", r"^line 2: malformed attribute list at column 8"),
    ],
)
def test_parser_errors_say_what_and_where(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_media_playlist(text)


def test_master_parser_needs_a_uri_after_stream_inf() -> None:
    with pytest.raises(ValueError, match="STREAM-INF without a URI"):
        parse_master_playlist("#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\n")
