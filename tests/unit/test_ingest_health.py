from __future__ import annotations

from media.ingest.health import HealthWindow


def test_snapshot_measures_the_window() -> None:
    w = HealthWindow(start_ms=0)
    for i in range(60):  # 2 s of 30 fps video, a keyframe every second
        w.on_video(i * 33, 25_000, keyframe=i % 30 == 0)
    for i in range(94):
        w.on_audio(i * 21, 400)
    snap = w.snapshot(2000)
    assert snap.fps == 30.0 and snap.keyframe_interval_ms == 990
    assert snap.video_bitrate_kbps == 6000 and snap.audio_bitrate_kbps == 150
    assert snap.status == "GOOD" and snap.late_frames == 0
    # The next window starts empty but remembers the last keyframe and the byte total.
    w.on_video(2000, 10, keyframe=True)
    snap = w.snapshot(3000)
    assert snap.fps == 1.0 and snap.keyframe_interval_ms == 1010 and snap.bytes_received > 1_500_000


def test_late_dropped_and_silent_windows() -> None:
    w = HealthWindow(start_ms=0)
    w.on_video(100, 10, keyframe=True)
    w.on_video(50, 10, keyframe=False)
    w.on_dropped(3)
    snap = w.snapshot(1000)
    assert (snap.late_frames, snap.dropped_frames, snap.status) == (1, 3, "DEGRADED")
    assert w.snapshot(2000).status == "POOR"
    w.on_video(6000, 10, keyframe=True)
    assert w.snapshot(3000).keyframe_interval_ms == 5900
