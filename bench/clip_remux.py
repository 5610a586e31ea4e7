"""Clip MP4 cost: ``remux_clip`` (PyAV stream copy, media/vod/remux.py) against the ffmpeg CLI's ``-c copy``.

One source, made once with the ffmpeg CLI: ``--seconds`` of 720p30 H.264 at a
streaming bitrate (x264 veryfast with B-frames, a 2 s GOP, film-grain noise so
the bitrate is real) plus AAC, in FLV; cut into GOP FLVs as the ingest cuts
them and packaged by ``transcode_gop`` into the "source" and "audio"
renditions, the ``init.mp4`` + ``.m4s`` files the origin stores.

For 30 s and 60 s clips starting 0.7 s into the first segment (mid-GOP, so the
edit list has a lead-in to hide), reported as one JSON line:

* ours: ``remux_clip`` on the segments the clip needs, in memory (demux,
  copy, faststart mux through a temporary file, the edit-list patch), wall
  and CPU ms per clip second, median of ``--repeats``;
* the reference, interleaved with ours: the ffmpeg CLI (Debian's) remuxing
  the same renditions, concatenated into files, with ``-ss 0.7 -t D -c copy
  -movflags +faststart`` (wall, and the child's CPU);
* the output's size and a check that PyAV decodes ours from 0 for D seconds.

The machine is shared and noisy: compare the ratio, not the raw times.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import av  # noqa: E402

from media.ingest import flv  # noqa: E402
from media.ingest.gop import GopSplitter, MediaTag, gop_to_flv  # noqa: E402
from media.transcode import AUDIO, SOURCE, transcode_gop  # noqa: E402
from media.vod.remux import Track, remux_clip  # noqa: E402

WIDTH, HEIGHT, FPS, GOP_S = 1280, 720, 30, 2
SKIP_MS = 700


def make_source(path: Path, seconds: int, kbps: int) -> None:
    """720p30 H.264 (veryfast, B-frames, fixed 2 s GOP) + AAC 128k in FLV."""
    gop = GOP_S * FPS
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
         "-f", "lavfi", "-i", f"testsrc2=size={WIDTH}x{HEIGHT}:rate={FPS}",
         "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-t", str(seconds),
         "-vf", "noise=alls=8:allf=t", "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p",
         "-b:v", f"{kbps}k", "-maxrate", f"{kbps}k", "-bufsize", f"{2 * kbps}k",
         "-x264-params", f"keyint={gop}:min-keyint={gop}:scenecut=0:bframes=2",
         "-c:a", "aac", "-b:a", "128k", "-ac", "2", "-f", "flv", str(path)], check=True)


def package(data: bytes) -> tuple[Track, Track]:
    """The source and audio renditions as the origin stores them."""
    splitter, gops = GopSplitter(), []
    for tag_type, ts, body in flv.iter_file_tags(data):
        if tag_type in (flv.TAG_AUDIO, flv.TAG_VIDEO):
            gops += splitter.push(MediaTag.from_payload("video" if tag_type == flv.TAG_VIDEO else "audio", ts, body))
    inits: dict[str, bytes] = {}
    segments: dict[str, list[bytes]] = {"source": [], "audio": []}
    for seq, gop in enumerate(gops):
        for out in transcode_gop(gop_to_flv(gop), [SOURCE, AUDIO], seq, gop.start_ms, gop.duration_ms):
            inits.setdefault(out.rendition, out.init)
            segments[out.rendition].append(out.segment)
    return Track(inits["source"], segments["source"]), Track(inits["audio"], segments["audio"])


def children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def ours(video: Track, audio: Track, duration_ms: int) -> tuple[float, float, bytes]:
    """(wall s, CPU s, MP4) of one remux, given the segments the clip needs, as the VOD worker gives them."""
    needed = -(-(SKIP_MS + duration_ms) // (GOP_S * 1000))  # whole GOPs covering the window
    video, audio = Track(video.init, video.segments[:needed]), Track(audio.init, audio.segments[:needed + 1])
    w0, c0 = time.perf_counter(), time.process_time()
    mp4 = remux_clip(video, audio, SKIP_MS, duration_ms)
    return time.perf_counter() - w0, time.process_time() - c0, mp4


def reference(video_file: Path, audio_file: Path, out: Path, duration_ms: int) -> tuple[float, float, int]:
    """(wall s, CPU s, bytes) of the ffmpeg CLI doing the same cut by stream copy."""
    w0, c0 = time.perf_counter(), children_cpu()
    skip = f"{SKIP_MS / 1000}"
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
                    "-ss", skip, "-i", str(video_file), "-ss", skip, "-i", str(audio_file),
                    "-t", f"{duration_ms / 1000}", "-map", "0:v", "-map", "1:a", "-c", "copy",
                    "-movflags", "+faststart", str(out)], check=True)
    return time.perf_counter() - w0, children_cpu() - c0, out.stat().st_size


def decoded_span_s(mp4: bytes) -> tuple[float, float, int]:
    """(first frame time, last frame time + one frame, frames) as PyAV decodes the clip."""
    with av.open(io.BytesIO(mp4), mode="r", format="mp4") as container:
        times = [f.time for f in container.decode(video=0) if f.time is not None]
    return times[0], times[-1] + 1 / FPS, len(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=64, help="source length (the longest clip plus a little)")
    parser.add_argument("--kbps", type=int, default=4500, help="source video bitrate")
    parser.add_argument("--repeats", type=int, default=5, help="runs per figure (median)")
    args = parser.parse_args()
    load_before = round(os.getloadavg()[0], 2)
    result: dict[str, object] = {"bench": "clip_remux", "cpus": os.cpu_count(), "load_avg_1m_before": load_before,
                                 "source": f"{WIDTH}x{HEIGHT}p{FPS} {args.kbps} kbps, {GOP_S} s GOP, AAC 128k",
                                 "skip_ms": SKIP_MS, "pyav": av.__version__}
    with tempfile.TemporaryDirectory(prefix="clip-bench-") as tmp_dir:
        tmp = Path(tmp_dir)
        make_source(tmp / "source.flv", args.seconds, args.kbps)
        video, audio = package((tmp / "source.flv").read_bytes())
        video_file, audio_file = tmp / "source.mp4", tmp / "audio.mp4"
        video_file.write_bytes(video.init + b"".join(video.segments))
        audio_file.write_bytes(audio.init + b"".join(audio.segments))
        for seconds in (30, 60):
            duration_ms = seconds * 1000
            runs: dict[str, list[float]] = {"wall": [], "cpu": [], "ref_wall": [], "ref_cpu": []}
            mp4, ref_bytes = b"", 0
            for _ in range(args.repeats):  # interleaved, so both see the same machine
                wall, cpu, mp4 = ours(video, audio, duration_ms)
                ref_wall, ref_cpu, ref_bytes = reference(video_file, audio_file, tmp / "ref.mp4", duration_ms)
                runs["wall"].append(wall)
                runs["cpu"].append(cpu)
                runs["ref_wall"].append(ref_wall)
                runs["ref_cpu"].append(ref_cpu)
            med = {k: statistics.median(v) for k, v in runs.items()}
            first_s, end_s, frames = decoded_span_s(mp4)
            result[f"clip_{seconds}s"] = {
                "remux_wall_ms_per_clip_s": round(med["wall"] * 1000 / seconds, 2),
                "remux_cpu_ms_per_clip_s": round(med["cpu"] * 1000 / seconds, 2),
                "remux_wall_ms": round(med["wall"] * 1000, 1),
                "ffmpeg_cli_wall_ms_per_clip_s": round(med["ref_wall"] * 1000 / seconds, 2),
                "ffmpeg_cli_cpu_ms_per_clip_s": round(med["ref_cpu"] * 1000 / seconds, 2),
                "wall_ratio_ours_to_cli": round(med["wall"] / med["ref_wall"], 2),
                "mp4_bytes": len(mp4), "ffmpeg_cli_mp4_bytes": ref_bytes,
                "decoded_first_frame_s": round(first_s, 3), "decoded_end_s": round(end_s, 3),
                "decoded_frames": frames,
            }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
