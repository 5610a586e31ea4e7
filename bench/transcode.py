"""Transcode cost: Glasscast's per-GOP job against the ffmpeg CLI on the same ladder.

One source, made once with the ffmpeg CLI: ``--seconds`` of 720p30 H.264 at a
streaming bitrate (x264 veryfast with B-frames, as OBS sends it, a 2 s GOP,
film-grain noise so the encoders have real work) plus AAC, in FLV.  It is cut
into GOP FLVs with ``GopSplitter``/``gop_to_flv`` (what the ingest stores), and
the ladder source copy + 480p30 1.5 Mbps + 360p30 0.8 Mbps + audio is made

  (a) by ``transcode_gop``, GOP by GOP, and
  (b) by the ffmpeg CLI from the whole FLV to HLS fMP4, with the same x264
      settings (veryfast, no B-frames, bitrate = maxrate, bufsize 2x, GOP =
      source GOP, no scene cuts) and the CLI's default bicubic scaler.

Reported, as one JSON line:

* CPU-seconds per media-second for each (this process's or the child's rusage,
  median of ``--repeats``), and their ratio; the CLI both with its default
  threads and with ``-threads 1``;
* real-time factor (media s / wall s) on one core: our job sequentially in a
  process pinned to one CPU, and the CLI pinned likewise; and for a pool of
  two processes (one per core here) taking GOPs as fast as they finish;
* per-GOP latency p50/p95/p99 from handing the GOP to a pool process to
  having its outputs back, one GOP in flight, for the passthrough-only and
  the full ladder;
* where the CPU goes: decode, scale and encode+package per media-second;
* GopAvailable-to-SegmentReady latency through a real media worker (consumer
  group, process pool, origin store, producer) at live pace
  (bench/segment_latency.py): to the passthrough segment and to the last
  rendition of the full ladder.

The machine is shared and noisy: compare the ratio, not the raw times.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, replace
from fractions import Fraction
from multiprocessing import get_context
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import av  # noqa: E402
from av.video.reformatter import VideoReformatter  # noqa: E402

from media.ingest import flv  # noqa: E402
from media.ingest.gop import GopSplitter, MediaTag, gop_to_flv  # noqa: E402
from media.transcode import Rendition, X264Settings, plan_ladder, transcode_gop  # noqa: E402
from media.transcode.source import parse_gop_flv  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import segment_latency  # noqa: E402

WIDTH, HEIGHT, FPS = 1280, 720, 30
Job = tuple[bytes, int, int, int]  # (GOP FLV, seq, pts ms, duration ms)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def make_source(path: Path, seconds: int, gop_s: int, kbps: int) -> None:
    """720p30 H.264 (veryfast, B-frames, fixed GOP, CBR-ish) + AAC 128k in FLV."""
    gop = gop_s * FPS
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
         "-f", "lavfi", "-i", f"testsrc2=size={WIDTH}x{HEIGHT}:rate={FPS}",
         "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-t", str(seconds),
         "-vf", "noise=alls=8:allf=t", "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p",
         "-b:v", f"{kbps}k", "-maxrate", f"{kbps}k", "-bufsize", f"{2 * kbps}k",
         "-x264-params", f"keyint={gop}:min-keyint={gop}:scenecut=0",
         "-c:a", "aac", "-b:a", "128k", "-ac", "2", "-f", "flv", str(path)], check=True)


def split_gops(data: bytes) -> list[Job]:
    splitter, gops = GopSplitter(), []
    for tag_type, ts, body in flv.iter_file_tags(data):
        if tag_type in (flv.TAG_AUDIO, flv.TAG_VIDEO):
            gops += splitter.push(MediaTag.from_payload("video" if tag_type == flv.TAG_VIDEO else "audio", ts, body))
    last = splitter.flush()
    gops += [last] if last is not None else []
    return [(gop_to_flv(g), seq, g.start_ms, g.duration_ms) for seq, g in enumerate(gops)]


def cli_ladder(source: Path, out: Path, gop_frames: int, threads: str, cpu: int | None = None) -> tuple[float, float]:
    """(CPU s, wall s) for the ffmpeg CLI making the same ladder as HLS fMP4."""
    x264 = f"keyint={gop_frames}:min-keyint={gop_frames}:scenecut=0:bframes=0"
    rungs: list[str] = []
    for i, kbps in enumerate((1500, 800), start=1):  # the sizes are in the filter graph below
        rungs += ["-map", f"[v{i}]", "-map", "0:a", f"-c:v:{i}", "libx264", f"-preset:v:{i}", "veryfast",
                  f"-b:v:{i}", f"{kbps}k", f"-maxrate:v:{i}", f"{kbps}k", f"-bufsize:v:{i}", f"{2 * kbps}k",
                  f"-x264-params:v:{i}", x264]
    out.mkdir(parents=True, exist_ok=True)
    cmd = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-threads", threads, "-i", str(source),
           "-filter_complex", "[0:v]split=2[a][b];[a]scale=854:480[v1];[b]scale=640:360[v2]",
           "-map", "0:v", "-map", "0:a", "-c:v:0", "copy", *rungs, "-map", "0:a", "-c:a", "copy",
           "-threads", threads, "-f", "hls", "-hls_time", "2", "-hls_segment_type", "fmp4",
           "-hls_playlist_type", "vod", "-var_stream_map", "v:0,a:0 v:1,a:1 v:2,a:2 a:3",
           "-hls_segment_filename", str(out / "%v_%03d.m4s"), str(out / "%v.m3u8")]
    pin = (lambda: os.sched_setaffinity(0, {cpu})) if cpu is not None else None
    c0, w0 = children_cpu(), time.perf_counter()
    subprocess.run(cmd, check=True, preexec_fn=pin)
    return children_cpu() - c0, time.perf_counter() - w0


def run_job(job: Job, ladder: list[Rendition]) -> tuple[int, float]:
    """One GOP in a pool process: (bytes produced, CPU s)."""
    c0 = time.process_time()
    outputs = transcode_gop(job[0], ladder, job[1], job[2], job[3])
    return sum(len(o.segment) for o in outputs), time.process_time() - c0


def run_all(jobs: list[Job], ladder: list[Rendition], settings: X264Settings | None = None,
            parallel: bool = True) -> tuple[float, float]:
    """Every GOP in order, in this process: (CPU s of all threads, wall s)."""
    c0, w0 = time.process_time(), time.perf_counter()
    for job in jobs:
        transcode_gop(job[0], ladder, job[1], job[2], job[3], settings=settings or X264Settings(), parallel=parallel)
    return time.process_time() - c0, time.perf_counter() - w0


def pinned_pool(cpu: int) -> ProcessPoolExecutor:
    return ProcessPoolExecutor(1, mp_context=get_context("spawn"), initializer=os.sched_setaffinity,
                               initargs=(0, {cpu}))


def breakdown(jobs: list[Job], interpolation: str) -> dict[str, float]:
    """CPU s of decoding every GOP once, and of scaling to both rungs, as the job does them."""
    decode_cpu = scale_cpu = 0.0
    scalers = [VideoReformatter(), VideoReformatter()]
    for job in jobs:
        src = parse_gop_flv(job[0])
        decoder = av.CodecContext.create("h264", "r")
        decoder.extradata, decoder.thread_count = src.avcc, 1
        frames = []
        c0 = time.process_time()
        for f in src.video:
            packet = av.Packet(f.data)
            packet.pts, packet.dts, packet.time_base = f.dts_ms + f.cts_ms, f.dts_ms, Fraction(1, 1000)
            frames += decoder.decode(packet)
        frames += decoder.decode(None)
        c1 = time.process_time()
        for frame in frames:
            for scaler, (w, h) in zip(scalers, ((854, 480), (640, 360))):
                scaler.reformat(frame, w, h, "yuv420p", interpolation=interpolation, threads=1)
        decode_cpu, scale_cpu = decode_cpu + c1 - c0, scale_cpu + time.process_time() - c1
    return {"decode": decode_cpu, "scale": scale_cpu}


def latencies(pool: ProcessPoolExecutor, jobs: list[Job], ladder: list[Rendition], passes: int) -> dict[str, float]:
    samples = []
    for _ in range(passes):
        for job in jobs:
            t0 = time.perf_counter()
            pool.submit(run_job, job, ladder).result()
            samples.append((time.perf_counter() - t0) * 1000)
    return {"p50": round(percentile(samples, 0.5), 1), "p95": round(percentile(samples, 0.95), 1),
            "p99": round(percentile(samples, 0.99), 1), "n": len(samples)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--gop-s", type=int, default=2)
    parser.add_argument("--kbps", type=int, default=3000, help="source video bitrate")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-pipeline", action="store_true", help="skip the GopAvailable-to-SegmentReady run")
    args = parser.parse_args()
    settings = X264Settings()
    full = plan_ladder("full", 10_000, WIDTH, HEIGHT, FPS)
    passthrough = plan_ladder("passthrough", 0, WIDTH, HEIGHT, FPS)
    cpus = sorted(os.sched_getaffinity(0))
    load_start = round(os.getloadavg()[0], 2)  # a shared machine: say how busy it was

    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        source = tmp / "source.flv"
        make_source(source, args.seconds, args.gop_s, args.kbps)
        jobs = split_gops(source.read_bytes())
        media_s = sum(j[3] for j in jobs) / 1000
        ours, cli, cli_1t = [], [], []
        # Interleaved, so a noisy neighbour hits both sides alike.
        for r in range(args.repeats):
            ours.append(run_all(jobs, full)[0] / media_s)
            cli.append(cli_ladder(source, tmp / f"cli{r}", args.gop_s * FPS, "0")[0] / media_s)
            cli_1t.append(cli_ladder(source, tmp / f"cli1t{r}", args.gop_s * FPS, "1")[0] / media_s)
        with pinned_pool(cpus[0]) as pool:
            pool.submit(run_job, jobs[0], passthrough).result()  # warm: imports, first x264 open
            one_core = statistics.median(media_s / pool.submit(run_all, jobs, full).result()[1]
                                         for _ in range(args.repeats))
        cli_one_core = media_s / cli_ladder(source, tmp / "cli-pinned", args.gop_s * FPS, "0", cpus[0])[1]
        with ProcessPoolExecutor(2, mp_context=get_context("spawn")) as pool:
            list(pool.map(run_job, jobs[:2], [passthrough] * 2))  # warm both processes
            t0 = time.perf_counter()
            list(pool.map(run_job, jobs * args.repeats, [full] * len(jobs) * args.repeats))
            pool_rtf = media_s * args.repeats / (time.perf_counter() - t0)
            latency = {"passthrough": latencies(pool, jobs, passthrough, 10),
                       "full": latencies(pool, jobs, full, args.repeats)}
        parts = breakdown(jobs, settings.interpolation)
        pipeline = None if args.no_pipeline else segment_latency.measure(jobs, tmp, WIDTH, HEIGHT, FPS, len(full))
        # Where the parallelism comes from: rung threads (default) or x264's own threads.
        variants = {}
        for name, variant, parallel in (("rung_threads_x264_1", settings, True),
                                        ("serial_x264_1", settings, False),
                                        ("serial_x264_auto", replace(settings, threads=0), False),
                                        ("rung_threads_x264_auto", replace(settings, threads=0), True)):
            cpu_s, wall_s = run_all(jobs, full, variant, parallel)
            variants[name] = {"cpu_s_per_media_s": round(cpu_s / media_s, 3),
                              "mean_gop_ms": round(wall_s * 1000 / len(jobs), 1)}

    ours_cpu, cli_cpu, cli_1t_cpu = (statistics.median(v) for v in (ours, cli, cli_1t))
    decode, scale = parts["decode"] / media_s, parts["scale"] / media_s
    result: dict[str, Any] = {
        "source": {"seconds": media_s, "size": f"{WIDTH}x{HEIGHT}", "fps": FPS, "gop_s": args.gop_s,
                   "video_kbps": args.kbps, "gops": len(jobs)},
        "ladder": [r.name for r in full], "x264": asdict(settings), "cores": len(cpus),
        "cpu_s_per_media_s": {"glasscast": round(ours_cpu, 3), "ffmpeg_cli": round(cli_cpu, 3),
                              "ffmpeg_cli_threads1": round(cli_1t_cpu, 3)},
        "cpu_ratio_vs_ffmpeg": round(ours_cpu / cli_cpu, 3),
        "cpu_ratio_vs_ffmpeg_threads1": round(ours_cpu / cli_1t_cpu, 3),
        "rtf_one_core": {"glasscast": round(one_core, 2), "ffmpeg_cli": round(cli_one_core, 2)},
        "rtf_pool_2proc": round(pool_rtf, 2),
        "latency_ms": latency,
        "gop_available_to_segment_ready_ms": pipeline,
        "threading_in_process": variants,
        "loadavg_1m": {"start": load_start, "end": round(os.getloadavg()[0], 2)},
        "cpu_breakdown_s_per_media_s": {"decode": round(decode, 3), "scale": round(scale, 3),
                                        "encode_package": round(ours_cpu - decode - scale, 3)},
        "aims": {"cpu_ratio_le_1.15": ours_cpu / cli_cpu <= 1.15, "rtf_one_core_gt_1": one_core > 1,
                 "passthrough_p95_lt_100ms": latency["passthrough"]["p95"] < 100,
                 "full_p95_le_600ms": latency["full"]["p95"] <= 600,
                 "pipeline_passthrough_p95_lt_100ms": bool(pipeline and pipeline["passthrough"]
                                                           and pipeline["passthrough"]["p95"] < 100),
                 "pipeline_full_p95_le_600ms": bool(pipeline and pipeline["full_ladder"]
                                                    and pipeline["full_ladder"]["p95"] <= 600)},
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
