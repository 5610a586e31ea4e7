"""Clips and videos on the running platform: time to make a clip, time to its MP4, storage per hour of video.

``glasscast up`` as a child (``--ladder tiered`` is the default ladder: with no
audience that is the source and audio renditions; ``--ladder full`` is every
rung).  A channel is made through the API and the ffmpeg CLI publishes
``--seconds`` of 720p30 test pattern (2 s GOP) to it.  Then, one JSON line:

* ``create_live_ms``: POST /v1/clips of the live stream (the last 30 s), p50 and
  p95 over ``--live-clips`` made while live;
* ``create_vod_ms``: POST /v1/clips of the video at spread offsets, p50 and p95
  over ``--clips``; the reference, in the same run and interleaved, is
  ``GET /v1/videos/{id}`` (a read of the same views with a signed answer);
* ``mp4_ready_s``: from the POST until the clip's MP4 is ready (the VOD
  worker's remux), each clip waited for before the next is made, p50 and p95;
* ``storage``: what the video's objects take in the store (``glasscast
  videos``), as bytes per hour of video: at the end (GOPs, segments, parts,
  thumbnails, storyboard) and once the live-only copies (parts, GOPs) have
  gone, beside the reference: the source rendition's segments alone (the
  encoder's own bits, as stored once).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx  # noqa: E402

from infra.launcher import GlasscastUp  # noqa: E402
from infra.settings import Settings  # noqa: E402
from media.blob_stores import open_store  # noqa: E402
from media.testpattern import ffmpeg_push  # noqa: E402
from media.vod.worker import storage_of  # noqa: E402

MS_PER_HOUR = 3_600_000
COMPACT_AFTER_S = 90  # the platform keeps parts and GOPs this long after the end (600 s by default)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)


def wait(check: Any, timeout_s: float, what: str, every_s: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(every_s)
    raise TimeoutError(f"timed out waiting for {what}")


def ready_after(http: httpx.Client, clip_id: str, t0: float) -> float:
    """Seconds from the clip's POST until its MP4 is ready (polled every 50 ms)."""
    def mp4() -> bool:
        got = http.get(f"/v1/clips/{clip_id}")
        got.raise_for_status()
        return got.json()["mp4_status"] == "ready"  # type: ignore[no-any-return]
    wait(mp4, 300, f"the MP4 of clip {clip_id}", every_s=0.05)
    return time.monotonic() - t0


def run(seconds: int, clips: int, live_clips: int, ladder: str, workdir: str | None) -> dict[str, Any]:
    with (contextlib.nullcontext(workdir) if workdir else tempfile.TemporaryDirectory(prefix="bench-clips-")) as tmp, \
            GlasscastUp(Path(tmp) / "data", {"GLASSCAST_LADDER_MODE": ladder,
                                              "GLASSCAST_VOD_CLIPS_PER_MINUTE": "100",
                                              "GLASSCAST_VOD_COMPACT_AFTER_S": str(COMPACT_AFTER_S),
                                              "GLASSCAST_VOD_SWEEP_INTERVAL_S": "5"}) as up, \
            httpx.Client(base_url=up.url, timeout=30) as http:
        name = f"clipper{int(time.time())}"
        http.post("/v1/users", json={"username": name, "password": "correct horse battery"}).raise_for_status()
        r = http.post("/v1/auth/login", json={"username": name, "password": "correct horse battery"})
        auth = {"Authorization": f"Bearer {r.json()['access_token']}"}
        r = http.post("/v1/channels", headers=auth, json={"name": name})
        r.raise_for_status()
        channel_id, key = r.json()["id"], r.json()["stream_key"]
        push = ffmpeg_push(up.rtmp_url, key, seconds, size="1280x720", log=Path(tmp) / "ffmpeg.log")
        made: list[tuple[str, float]] = []  # (clip id, when its POST was sent)
        live_ms: list[float] = []
        ready_s: list[float] = []  # POST to MP4 ready, each clip waited for before the next
        try:
            time.sleep(min(35.0, seconds * 0.6))  # long enough for a full 30 s live clip
            for _ in range(live_clips):
                t0 = time.monotonic()
                r = http.post("/v1/clips", headers=auth, json={"broadcaster_id": channel_id, "duration_s": 30})
                live_ms.append((time.monotonic() - t0) * 1000)
                r.raise_for_status()
                made.append((r.json()["id"], t0))
                ready_s.append(ready_after(http, r.json()["id"], t0))
            push.wait(timeout=seconds + 60)
        finally:
            if push.poll() is None:
                push.kill()
        video_id = str(http.get(f"/v1/clips/{made[0][0]}").json()["video_id"])

        def video() -> dict[str, Any] | None:
            got = http.get(f"/v1/videos/{video_id}")
            return got.json() if got.status_code == 200 and got.json()["storyboard"] else None
        listed = wait(video, 120, "the video and its storyboard")
        duration_ms = int(listed["duration_ms"])
        settings = Settings(data_dir=up.data_dir)
        origin, gops = open_store(settings, "origin"), open_store(settings, "blobs")
        at_end = storage_of(origin, gops, video_id)  # before the live-only copies go
        vod_ms: list[float] = []
        ref_ms: list[float] = []
        for i in range(clips):
            t0 = time.monotonic()
            http.get(f"/v1/videos/{video_id}").raise_for_status()
            ref_ms.append((time.monotonic() - t0) * 1000)
            offset = (duration_ms / 1000 - 11) * i / max(1, clips - 1)
            t0 = time.monotonic()
            r = http.post("/v1/clips", headers=auth, json={"video_id": video_id, "offset_s": round(offset, 3),
                                                           "duration_s": 10})
            vod_ms.append((time.monotonic() - t0) * 1000)
            if r.status_code == 429:  # the per-user allowance: wait out the minute, then time it again
                time.sleep(float(r.json()["retry_after_s"]))
                t0 = time.monotonic()
                r = http.post("/v1/clips", headers=auth, json={"video_id": video_id, "offset_s": round(offset, 3),
                                                               "duration_s": 10})
                vod_ms[-1] = (time.monotonic() - t0) * 1000
            r.raise_for_status()
            made.append((r.json()["id"], t0))
            ready_s.append(ready_after(http, r.json()["id"], t0))
        wait(lambda: not list(gops.list(f"gops/{video_id}/")), COMPACT_AFTER_S + 60, "the video's compaction")
        use = storage_of(origin, gops, video_id)
        source_bytes = sum(b.size for b in origin.list(f"hls/{video_id}/source/")
                           if b.key.count(".") == 1 and b.key.endswith(".m4s"))
        renditions = sorted({b.key.split("/")[2] for b in origin.list(f"hls/{video_id}/")})
    per_hour = MS_PER_HOUR / duration_ms
    return {
        "bench": "clips", "ladder": ladder, "renditions": renditions, "video_s": round(duration_ms / 1000, 1),
        "create_live_ms": {"p50": pct(live_ms, 0.5), "p95": pct(live_ms, 0.95), "n": len(live_ms)},
        "create_vod_ms": {"p50": pct(vod_ms, 0.5), "p95": pct(vod_ms, 0.95), "n": len(vod_ms)},
        "reference_get_video_ms": {"p50": pct(ref_ms, 0.5), "p95": pct(ref_ms, 0.95), "n": len(ref_ms)},
        "mp4_ready_s": {"p50": pct(ready_s, 0.5), "p95": pct(ready_s, 0.95), "n": len(ready_s),
                        "live_clips": [round(x, 1) for x in ready_s[:len(live_ms)]]},
        "storage": {"objects": use.objects, "bytes": use.bytes,
                    "gb_per_hour": round(use.bytes * per_hour / 1e9, 2),
                    "gb_per_hour_at_end": round(at_end.bytes * per_hour / 1e9, 2),
                    "reference_source_segments_gb_per_hour": round(source_bytes * per_hour / 1e9, 2)},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--clips", type=int, default=20)
    parser.add_argument("--live-clips", type=int, default=3)
    parser.add_argument("--ladder", choices=["tiered", "full"], default="tiered")
    parser.add_argument("--workdir", help="keep the platform's data and logs here (default: a temporary folder)")
    args = parser.parse_args()
    print(json.dumps(run(args.seconds, args.clips, args.live_clips, args.ladder, args.workdir)), flush=True)


if __name__ == "__main__":
    main()
