"""Scaled rungs of one GOP, part by part: source parts in, the same parts of every rung out.

A media worker does not wait for the whole GOP (docs/ARCHITECTURE.md, "Media
pipeline"): each source part the ingest stores (``media/ingest/parts.py``) is
demuxed (init segment + part), its frames are decoded by one decoder kept for
the GOP, and every frame is scaled and encoded at once by one x264 encoder per
rung, also kept for the GOP, so rung part *i* covers exactly the frames (and
carries exactly the AAC frames) of source part *i*, and a rung's segment is
its parts concatenated, as the source's is.

x264 runs with ``tune=zerolatency`` here: no lookahead, no B-frames, no frame
held back, so a part's frames come out of the encoder before the next part
arrives.  ``bench/transcode.py`` measures what that costs against the
whole-GOP settings (``encoders.py``).  The first frame of each GOP is forced to
an IDR, as for whole GOPs, and so is the first frame of the part where the
ingest split the GOP for the rungs (``media/package/parts.py``): every rung
segment, a half GOP, is independent.

Blocking (PyAV): run it in a thread.  One ``GopParts`` belongs to one thread
at a time.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import av

from media.package.codecs import aac_codec_string, avc_codec_string, avcc_from_annexb
from media.package.fmp4 import AudioTrack, Fragment, Sample, VideoTrack, init_segment, media_segment
from media.transcode.encoders import SOURCE_TIME_BASE, EncodedFrame, RungEncoder, X264Settings
from media.transcode.ladder import Rendition

__all__ = ["GopParts", "LIVE_X264", "RungPart", "SourceConfig", "source_config"]

LIVE_X264 = X264Settings(tune="zerolatency")
TICKS_PER_MS = 90


@dataclass(frozen=True)
class SourceConfig:
    """What the source's init segment says: the avcC and the AAC AudioSpecificConfig (if it has audio)."""

    avcc: bytes
    asc: bytes | None


def source_config(init: bytes, first_part: bytes) -> SourceConfig:
    """Read the source rendition's codec configuration (PyAV's demuxer wants a fragment to open the file)."""
    with av.open(io.BytesIO(init + first_part), format="mp4") as container:
        video = container.streams.video[0].codec_context.extradata
        audio = container.streams.audio[0].codec_context.extradata if container.streams.audio else None
    if not video:
        raise ValueError("the source init segment has no avcC")
    return SourceConfig(bytes(video), bytes(audio) if audio else None)


@dataclass(frozen=True)
class RungPart:
    """One rung's part: the bytes to store (moof + mdat, styp on part 0) and its codecs and init segment."""

    rendition: Rendition
    data: bytes
    init: bytes
    codecs: str
    duration_ms: int  # the source part's span on the video timeline


@dataclass
class _Demuxed:
    video: list[Any]  # av.Packet, decode order
    audio: list[Sample]
    audio_start: int  # ticks of the audio rate
    start_ms: int
    end_ms: int


class GopParts:
    """One GOP being transcoded: ``part()`` for each source part in order; see the module docstring."""

    def __init__(self, config: SourceConfig, init: bytes, rungs: list[Rendition], source_fps: float | None,
                 settings: X264Settings = LIVE_X264) -> None:
        self.init = init
        self.rungs = rungs
        self.audio = AudioTrack.from_asc(config.asc) if config.asc else None
        self.decoder = av.CodecContext.create("h264", "r")
        self.decoder.extradata = config.avcc
        self.decoder.thread_count = 1
        self.encoders = [RungEncoder(r, settings, source_fps) for r in rungs]
        self._emitted = [0] * len(rungs)  # encoded frames already put in a part, per rung
        self._first = True
        self.inits: list[bytes] = []
        self.codecs: list[str] = []
        for encoder in self.encoders:
            avcc = avcc_from_annexb(bytes(encoder.codec.extradata or b""))
            tracks: list[VideoTrack | AudioTrack] = [VideoTrack.from_avcc(avcc)]
            codecs = avc_codec_string(avcc)
            if self.audio is not None:
                tracks.append(self.audio)
                codecs += "," + aac_codec_string(self.audio.asc)
            self.inits.append(init_segment(tracks))
            self.codecs.append(codecs)

    def _demux(self, part: bytes) -> _Demuxed:
        video: list[Any] = []
        audio: list[Sample] = []
        audio_start = 0
        ends: list[int] = []
        with av.open(io.BytesIO(self.init + part), mode="r", format="mp4") as container:
            for packet in container.demux():
                if packet.size == 0 or packet.dts is None:
                    continue
                if packet.stream.type == "video":
                    tb = packet.time_base
                    dts_ms = round(packet.dts * tb * 1000)
                    pts_ms = round((packet.pts if packet.pts is not None else packet.dts) * tb * 1000)
                    ends.append(round((packet.dts + (packet.duration or 0)) * tb * 1000))
                    out = av.Packet(bytes(packet))
                    out.dts, out.pts, out.time_base = dts_ms, pts_ms, SOURCE_TIME_BASE
                    video.append(out)
                elif packet.stream.type == "audio":
                    if not audio:
                        audio_start = int(packet.dts)  # mp4 audio time base is the sample rate
                    audio.append(Sample(bytes(packet), int(packet.duration or 1024)))
        if not video:
            raise ValueError("a source part without video")
        return _Demuxed(video, audio, audio_start, video[0].dts, max(ends))

    def part(self, data: bytes, index: int, last: bool, rung_index: int | None = None) -> list[RungPart]:
        """Transcode source part ``index`` (its stored bytes) into the same part of every rung.

        ``rung_index`` is the part's index in the rung segment it belongs to (``parts.rung_segment``; the
        source index when not given): at 0 its first frame is forced to an IDR and the part opens with
        ``styp``, so the GOP's second half is a segment of its own.
        """
        rung_index = index if rung_index is None else rung_index
        if rung_index == 0:
            self._first = True
        demuxed = self._demux(data)
        for packet in demuxed.video:
            for frame in self.decoder.decode(packet):
                self._push(frame)
        if last:
            for frame in self.decoder.decode(None):
                self._push(frame)
        out = []
        for i, encoder in enumerate(self.encoders):
            if last:
                encoder.finish()  # flush: zerolatency holds nothing back, but a flush is cheap insurance
            frames = encoder.frames[self._emitted[i]:]
            self._emitted[i] = len(encoder.frames)
            out.append(self._rung_part(i, index, rung_index == 0, frames, demuxed))
        return out

    def _push(self, frame: Any) -> None:
        frame.time_base = SOURCE_TIME_BASE
        frame.pict_type = av.video.frame.PictureType.I if self._first else av.video.frame.PictureType.NONE
        self._first = False
        for encoder in self.encoders:
            encoder.push(frame)

    def _rung_part(self, i: int, index: int, starts_segment: bool, frames: list[EncodedFrame],
                   demuxed: _Demuxed) -> RungPart:
        fragments: list[Fragment] = []
        if frames:
            ends = [f.dts_ms for f in frames[1:]] + [demuxed.end_ms]
            samples = [Sample(f.data, max(end - f.dts_ms, 1) * TICKS_PER_MS, f.keyframe,
                              (f.pts_ms - f.dts_ms) * TICKS_PER_MS) for f, end in zip(frames, ends)]
            fragments.append(Fragment(1, frames[0].dts_ms * TICKS_PER_MS, samples, video=True))
        if self.audio is not None and demuxed.audio:
            fragments.append(Fragment(2, demuxed.audio_start, demuxed.audio, video=False))
        data = media_segment(index + 1, fragments, styp=starts_segment) if fragments else b""
        return RungPart(self.rungs[i], data, self.inits[i], self.codecs[i], demuxed.end_ms - demuxed.start_ms)
