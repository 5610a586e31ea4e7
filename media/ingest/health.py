"""Stream health over a window: bitrates, frame rate, keyframe interval, dropped and late frames.

Pure counting; the stream pipeline feeds it every media message and turns a
snapshot into a StreamHealth event every ``ingest.health_interval_s``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from schemas.records.stream import StreamHealthStatus

# A keyframe interval above this makes players wait and the ladder's segments long
# (Twitch asks for 2 s; we flag anything over 4 s).
MAX_GOOD_KEYFRAME_INTERVAL_MS = 4000


@dataclass(frozen=True, slots=True)
class HealthSnapshot:
    """One window's measurements: the window's part of a StreamHealth event."""

    window_ms: int
    video_bitrate_kbps: int
    audio_bitrate_kbps: int
    ingest_bitrate_kbps: int
    fps: float
    keyframe_interval_ms: int | None
    dropped_frames: int
    late_frames: int
    bytes_received: int
    status: StreamHealthStatus


@dataclass
class HealthWindow:
    """Counters since the last snapshot, plus what must outlive a window."""

    start_ms: int
    video_bytes: int = 0
    audio_bytes: int = 0
    video_frames: int = 0
    audio_frames: int = 0
    dropped_frames: int = 0
    late_frames: int = 0
    keyframe_intervals: list[int] = field(default_factory=list)
    last_keyframe_ts: int | None = None
    last_video_ts: int | None = None
    last_audio_ts: int | None = None
    total_bytes: int = 0

    def on_video(self, timestamp_ms: int, size: int, keyframe: bool) -> None:
        self.video_bytes += size
        self.total_bytes += size
        self.video_frames += 1
        if self.last_video_ts is not None and timestamp_ms < self.last_video_ts:
            self.late_frames += 1
        self.last_video_ts = timestamp_ms
        if keyframe:
            if self.last_keyframe_ts is not None and timestamp_ms > self.last_keyframe_ts:
                self.keyframe_intervals.append(timestamp_ms - self.last_keyframe_ts)
            self.last_keyframe_ts = timestamp_ms

    def on_audio(self, timestamp_ms: int, size: int) -> None:
        self.audio_bytes += size
        self.total_bytes += size
        self.audio_frames += 1
        if self.last_audio_ts is not None and timestamp_ms < self.last_audio_ts:
            self.late_frames += 1
        self.last_audio_ts = timestamp_ms

    def on_dropped(self, frames: int) -> None:
        self.dropped_frames += frames

    def snapshot(self, now_ms: int) -> HealthSnapshot:
        """The measurements of the window ending now; starts a new window."""
        window_ms = max(1, now_ms - self.start_ms)
        keyframe_ms = self.keyframe_intervals[-1] if self.keyframe_intervals else None
        fps = self.video_frames * 1000 / window_ms
        status: StreamHealthStatus
        if self.video_frames == 0:
            status = "POOR"
        elif (keyframe_ms is not None and keyframe_ms > MAX_GOOD_KEYFRAME_INTERVAL_MS) or self.dropped_frames \
                or self.late_frames:
            status = "DEGRADED"
        else:
            status = "GOOD"
        snap = HealthSnapshot(
            window_ms=window_ms,
            video_bitrate_kbps=round(self.video_bytes * 8 / window_ms),
            audio_bitrate_kbps=round(self.audio_bytes * 8 / window_ms),
            ingest_bitrate_kbps=round((self.video_bytes + self.audio_bytes) * 8 / window_ms),
            fps=round(fps, 2),
            keyframe_interval_ms=keyframe_ms,
            dropped_frames=self.dropped_frames,
            late_frames=self.late_frames,
            bytes_received=self.total_bytes,
            status=status,
        )
        self.start_ms = now_ms
        self.video_bytes = self.audio_bytes = self.video_frames = self.audio_frames = 0
        self.dropped_frames = self.late_frames = 0
        self.keyframe_intervals = []
        return snap
