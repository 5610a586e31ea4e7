"""The transcode job: one GOP FLV in, one init + media segment per rendition out.

``transcode_gop`` is what a media worker runs in a process pool for each
``GopAvailable``: pure CPU, no I/O, picklable arguments and results.  It

1. parses the GOP FLV into coded samples (``media.transcode.source``);
2. remuxes the passthrough ("source") and audio-only renditions straight from
   those samples: no decode, no encode, byte-identical H.264 and AAC;
3. decodes the H.264 *once*, and hands every decoded frame to one
   ``RungEncoder`` per scaled rendition, which scales it, encodes it with x264
   and flushes at the end of the GOP (``encode(None)``);
4. packages each rendition as fMP4 (``media.package.fmp4``): an init segment
   and one media segment whose ``tfdt`` is the GOP's time on the source
   timeline (ISO/IEC 14496-12 8.8.12), with the source AAC muxed in.

Decode, scale and encode overlap: with ``parallel`` (the default) each scaled
rung runs in its own thread fed through a small bounded queue while this
thread decodes.  FFmpeg's decode, swscale and x264 calls release the GIL, so
two rungs and the decoder spread over the cores without the CPU cost of
x264's frame threads.  Muxed audio+video segments are what RFC 8216 (3.3, 4.3.4.2)
allows for HLS; an audio-only rendition carries the audio alone.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import av

from media.package.codecs import aac_codec_string, aac_frame_samples, avc_codec_string
from media.package.fmp4 import AudioTrack, Fragment, VideoTrack, init_segment, media_segment
from media.transcode.encoders import EncodedFrame, RungEncoder, X264Settings
from media.transcode.ladder import Rendition
from media.transcode.source import SourceGop, parse_gop_flv
from media.transcode.timeline import TICKS_PER_MS, ExactMs, audio_samples, ms_to_90k, ms_to_ticks, video_samples

__all__ = ["RenditionOutput", "transcode_gop"]

FRAME_QUEUE = 8  # decoded frames buffered per rung thread: bounds memory, keeps the decoder ahead
_TIME_BASE = Fraction(1, 1000)
_DEFAULT_X264 = X264Settings()  # frozen: one shared default is safe


@dataclass(frozen=True)
class RenditionOutput:
    """One rendition of one GOP, ready to store: init segment, media segment and playlist facts."""

    rendition: str
    init: bytes
    segment: bytes
    start_pts_90k: int  # the first sample's time on the 90 kHz MPEG timeline (SegmentReady.pts_90k)
    duration_ms: int
    codecs: str  # RFC 6381 CODECS, e.g. "avc1.64001f,mp4a.40.2"
    bandwidth_bps: int  # peak: this segment's bits over its duration (RFC 8216 4.3.4.2 BANDWIDTH)
    width: int | None
    height: int | None
    fps: float | None
    audio_only: bool

    @property
    def start_pts_ms(self) -> int:
        """``start_pts_90k`` in whole milliseconds (nearest)."""
        return round(Fraction(self.start_pts_90k, TICKS_PER_MS))


class _RungThread(threading.Thread):
    """Runs one ``RungEncoder`` off a bounded queue; an error is kept and re-raised by the job."""

    def __init__(self, encoder: RungEncoder) -> None:
        super().__init__(name=f"rung-{encoder.rendition.name}", daemon=True)
        self.encoder = encoder
        self.inbox: queue.Queue[av.VideoFrame | None] = queue.Queue(FRAME_QUEUE)
        self.result: tuple[bytes, list[EncodedFrame]] | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        # After an error keep draining to the sentinel, so the decoder never blocks on a full queue.
        while (frame := self.inbox.get()) is not None:
            if self.error is None:
                try:
                    self.encoder.push(frame)
                except BaseException as exc:  # noqa: BLE001 - re-raised in the job's thread
                    self.error = exc
        if self.error is None:
            try:
                self.result = self.encoder.finish()
            except BaseException as exc:  # noqa: BLE001
                self.error = exc


def _packets(src: SourceGop) -> list[av.Packet[Any]]:
    """The GOP's H.264 access units as decoder input, timed in ms relative to the keyframe."""
    packets = []
    for frame in src.video:
        packet = av.Packet(frame.data)
        packet.dts, packet.pts, packet.time_base = frame.dts_ms, frame.dts_ms + frame.cts_ms, _TIME_BASE
        packets.append(packet)
    return packets


def _encode_rungs(src: SourceGop, rungs: list[Rendition], settings: X264Settings, source_fps: float | None,
                  parallel: bool) -> list[tuple[bytes, list[EncodedFrame]]]:
    """Decode the GOP once and encode every scaled rung -> [(avcC, frames)] in ``rungs`` order."""
    encoders = [RungEncoder(r, settings, source_fps) for r in rungs]
    threads = [_RungThread(e) for e in encoders] if parallel else []
    sinks: list[Callable[[av.VideoFrame], None]] = ([t.inbox.put for t in threads] if parallel
                                                    else [e.push for e in encoders])
    decoder = av.CodecContext.create("h264", "r")
    decoder.extradata = src.avcc
    # One decoder thread: the rung threads already fill the cores, and frame
    # threading would add CPU and hold frames back.
    decoder.thread_count = 1
    first = True
    for t in threads:
        t.start()
    try:
        # decode(None) at the end flushes the frames the decoder holds for reordering.
        for packet in [*_packets(src), None]:
            for frame in decoder.decode(packet):
                assert isinstance(frame, av.VideoFrame)
                frame.time_base = _TIME_BASE
                frame.pict_type = av.video.frame.PictureType.I if first else av.video.frame.PictureType.NONE
                first = False
                for sink in sinks:
                    sink(frame)
    finally:
        for t in threads:
            t.inbox.put(None)
            t.join()
    for t in threads:
        if t.error is not None:
            raise t.error
    return [t.result for t in threads if t.result is not None] if parallel else [e.finish() for e in encoders]


def _audio_fragment(src: SourceGop, track: AudioTrack, gop_pts_ms: ExactMs) -> Fragment | None:
    """The GOP's AAC frames on the source timeline, in samples; None if it has none."""
    assert src.asc is not None
    samples = audio_samples([(f.pts_ms, f.data) for f in src.audio], aac_frame_samples(src.asc), track.sample_rate)
    if not samples:
        return None
    return Fragment(0, ms_to_ticks(gop_pts_ms + src.audio[0].pts_ms, track.sample_rate), samples, video=False)


def _output(rendition: Rendition, tracks: list[VideoTrack | AudioTrack], fragments: list[Fragment], seq: int,
            start_pts_90k: int, duration_ms: int, fps: float | None) -> RenditionOutput:
    # Track ids follow the init segment's order (1, 2, ...): at most one video and one audio track.
    ids = {isinstance(t, VideoTrack): i for i, t in enumerate(tracks, start=1)}
    numbered = [Fragment(ids[f.video], f.base_decode_time, f.samples, f.video) for f in fragments]
    segment = media_segment(seq + 1, numbered)  # mfhd sequence numbers start at 1 (8.8.5)
    codecs = ",".join(avc_codec_string(t.avcc) if isinstance(t, VideoTrack) else aac_codec_string(t.asc)
                      for t in tracks)
    video = next((t for t in tracks if isinstance(t, VideoTrack)), None)
    return RenditionOutput(
        rendition.name, init_segment(tracks), segment, start_pts_90k, duration_ms, codecs,
        len(segment) * 8 * 1000 // max(duration_ms, 1), video.width if video else None,
        video.height if video else None, fps if video else None, video is None)


def transcode_gop(flv: bytes, renditions: list[Rendition], seq: int, gop_pts_ms: ExactMs,
                  gop_duration_ms: ExactMs, *, settings: X264Settings = _DEFAULT_X264,
                  parallel: bool = True) -> list[RenditionOutput]:
    """Every rendition of one GOP, in ``renditions`` order; audio-only is left out if the GOP has no audio.

    ``gop_pts_ms``/``gop_duration_ms`` place the GOP on the source timeline, in exact
    milliseconds (``timeline.gop_ms`` of the GopAvailable's ``pts``/``duration``).
    """
    src = parse_gop_flv(flv)
    source_fps = float(Fraction(len(src.video) * 1000) / gop_duration_ms) if gop_duration_ms > 0 else None
    # The audio track is in the init segment whenever the stream has audio, even
    # if this GOP carries no AAC frame, so the init segment is the same for every GOP.
    audio_track = AudioTrack.from_asc(src.asc) if src.asc is not None else None
    audio_fragment = _audio_fragment(src, audio_track, gop_pts_ms) if audio_track is not None else None
    audio_tracks: list[VideoTrack | AudioTrack] = [audio_track] if audio_track is not None else []
    audio_fragments = [audio_fragment] if audio_fragment is not None else []

    scaled = [r for r in renditions if not (r.passthrough or r.audio_only)]
    # Passthrough and audio-only ladders never touch a decoder.
    encoded = dict(zip((r.name for r in scaled), _encode_rungs(src, scaled, settings, source_fps, parallel)
                       if scaled else []))
    outputs = []
    for r in renditions:
        if r.audio_only:
            if audio_track is None or audio_fragment is None:
                continue
            ticks = sum(s.duration for s in audio_fragment.samples)
            outputs.append(_output(r, [audio_track], [audio_fragment], seq,
                                   ms_to_90k(gop_pts_ms + src.audio[0].pts_ms),
                                   round(ticks * 1000 / audio_track.sample_rate), None))
            continue
        if r.passthrough:
            avcc, fps = src.avcc, r.fps or source_fps
            frames = [(f.dts_ms, f.dts_ms + f.cts_ms, f.keyframe, f.data) for f in src.video]
        else:
            avcc, encoded_frames = encoded[r.name]
            fps = r.fps
            frames = [(f.dts_ms, f.pts_ms, f.keyframe, f.data) for f in encoded_frames]
        # Every video rendition starts at the keyframe's time: tfdt = GOP pts in 90 kHz ticks.
        start_90k = ms_to_90k(gop_pts_ms)
        fragment = Fragment(0, start_90k, video_samples(frames, gop_duration_ms), video=True)
        outputs.append(_output(r, [VideoTrack.from_avcc(avcc), *audio_tracks], [fragment, *audio_fragments],
                               seq, start_90k, round(gop_duration_ms), fps))
    return outputs
