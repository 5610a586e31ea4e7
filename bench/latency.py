"""Glass-to-glass latency of live playback in Chromium: Glasscast's LL-HLS and plain HLS against nginx-rtmp.

Prints ONE JSON line.  The workload: the ffmpeg CLI publishing 720p30 over RTMP (testsrc + a 1 kHz tone,
x264 veryfast zerolatency, fixed GOP of 1 s or 2 s, no scene cuts, in real time with ``-re``), played in
Debian's Chromium (Playwright, bench/browser.py) by hls.js 1.7 from gateways/web/node_modules.

Cases (``--cases``, each at every ``--gops`` value, ``--seconds`` of sampling each):

  * ``source-ll`` / ``transcoded-ll``: Glasscast (``glasscast up`` with GLASSCAST_LADDER_MODE=full) played by
    the web app's own player (gateways/web/static/js/player.js: hls.js ``lowLatencyMode``, catch-up rate,
    stall recovery) forced to the source rendition or to ``--transcoded`` (default 480p30);
  * ``source-plain`` / ``transcoded-plain``: the same streams played by hls.js with its default settings and
    ``lowLatencyMode: false``: what a client without LL-HLS support gets (issue 12, item 5);
  * ``nginx``: the same publisher into nginx with the RTMP module (Debian's libnginx-mod-rtmp, installed with
    apt-get when missing), ``hls on; hls_fragment`` = the GOP, played by hls.js in plain mode as above.

Every case is played by one page (routed by Playwright at ``<server origin>/__bench__/``, so the playlists are
same-origin; it loads hls.js and the player modules from this checkout) that samples every ``--sample-ms``
in the page itself, after ``--settle-s`` seconds of playback:

  * **PDT** (Glasscast): the wall clock minus hls.js ``playingDate``, the PROGRAM-DATE-TIME of the frame on
    screen.  Glasscast's PDT is the ingest's wall clock when the GOP's keyframe arrived plus the frame's media
    offset, so this is ingest-to-screen: the encoder's and the RTMP hop's delay are not in it.  This is the
    issue's definition and the headline figure (``glass_to_glass_ms``) for Glasscast.
  * **picture clock** (every case; the only one for nginx, whose playlists carry no PROGRAM-DATE-TIME): the
    publisher draws the number ``n`` of every frame into its top-left corner (22 blocks of 32x32 pixels: a
    white and a black guard, then 20 bits, least significant first; an ffmpeg ``geq`` on a cropped strip).
    The page draws the strip of the frame on screen onto a canvas and reads ``n`` back (samples whose guards
    do not read as white and black are dropped); the frame's capture time is ``start + n / fps``.  ``start``
    (when ffmpeg's ``-re`` clock began) is bounded from above by ffmpeg's ``-progress`` reports: at wall time
    ``W`` with ``frame=F`` encoded, frame ``F-1`` had been captured, so ``start <= W - (F-1)/fps``; the minimum
    over the run is used.  The figure is camera-to-screen (encoder and RTMP included), may understate by the
    encoder's delay at most, and is the one comparable across servers (``clock_ms``).  For Glasscast,
    ``ingest_offset_ms`` is the median of PDT minus capture time: what the PDT figure leaves out.

Also per case: time to first frame (navigation to the first presented frame, requestVideoFrameCallback),
``waiting`` events after playback started and hls.js BUFFER_STALLED_ERRORs (stalls), jumps back to live
(the web player's stall recovery), part and segment loads, and ``publisher_speed``: frames ffmpeg encoded per
frame of wall time while the case was sampled.  The publisher stands for the streamer's own computer, so it
runs at nice -10 (when allowed) ahead of the platform and the browser; below ~0.98 it was starved all the
same, media reached the server slower than real time and every figure of that case is suspect (stalls are
then unavoidable, and PDT, anchored at each keyframe's arrival, no longer tracks the backlog).  nginx runs
first (with no Glasscast running), then one ``glasscast up`` serves every Glasscast case; each GOP setting
gets its own channel and publisher.  The machine is shared: compare figures within one run.

    .venv/bin/python bench/latency.py --seconds 30
    .venv/bin/python bench/latency.py --gops 2 --cases source-ll,nginx --seconds 20
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx  # noqa: E402
from playwright.async_api import Browser, Page, Route  # noqa: E402

from bench.browser import (  # noqa: E402
    chromium,
    first_frame_of,
    new_page,
    percentile,
    player_stats,
    start_sampler,
    stop_sampler,
    wait_first_frame,
)
from infra.embedded.process import free_port, port_open  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
HLS_JS = ROOT / "gateways" / "web" / "node_modules" / "hls.js" / "dist" / "hls.min.js"
PLAYER_JS = ROOT / "gateways" / "web" / "static" / "js"
FPS = 30
SIZE = "1280x720"
CLOCK_BLOCK = 32      # pixels per clock block in the 1280x720 picture
CLOCK_BITS = 20       # frame numbers up to ~9.7 h at 30 fps
PUBLISHER_NICE = -10  # the publisher's priority: the server under test must not starve the "streamer's PC"
STARVED_BELOW = 0.98  # publisher speed under which a case's media reached the server slower than real time
CASES = ("source-ll", "source-plain", "transcoded-ll", "transcoded-plain", "nginx")
NGINX_RTMP_MODULE = Path("/usr/lib/nginx/modules/ngx_rtmp_module.so")
AIMS = {"source_ll_p50_ms": 1500, "source_ll_p95_ms": 2000, "transcoded_ll_p50_ms": 2000, "plain_p50_ms": 5000}

NGINX_CONF = """
load_module {module};
worker_processes 1;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
{user}
events {{ worker_connections 1024; }}
rtmp {{
    server {{
        listen 127.0.0.1:{rtmp_port};
        chunk_size 4096;
        application live {{
            live on;
            record off;
            hls on;
            hls_path {tmp}/hls;
            hls_fragment {fragment_ms}ms;
            hls_playlist_length 20s;
        }}
    }}
}}
http {{
    access_log off;
    client_body_temp_path {tmp}/nginx-body;
    proxy_temp_path {tmp}/nginx-proxy;
    fastcgi_temp_path {tmp}/nginx-fastcgi;
    uwsgi_temp_path {tmp}/nginx-uwsgi;
    scgi_temp_path {tmp}/nginx-scgi;
    types {{ application/vnd.apple.mpegurl m3u8; video/mp2t ts; }}
    server {{
        listen 127.0.0.1:{http_port};
        location /hls/ {{ root {tmp}; add_header Cache-Control no-cache; }}
    }}
}}
"""

# The page every case plays in.  `params` (JSON in the URL's fragment): src, mode ("ll" | "plain"),
# rendition (or null), fps, clock {block, bits, width, height}.  window.glasscastPlayer is what
# bench/browser.py's sampler reads: {stats, sample()}.
BENCH_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>latency bench</title>
<script src="/__bench__/hls.min.js"></script></head>
<body style="margin:0;background:#000">
<video id="video" muted autoplay playsinline style="width:1280px;height:720px"></video>
<div hidden><select id="quality"></select><span id="latency"></span><button id="catch-up"></button></div>
<script type="module">
import { LivePlayer, renditionOf } from '/__bench__/js/player.js';
const params = JSON.parse(decodeURIComponent(location.hash.slice(1)));
const video = document.getElementById('video');
const canvas = document.createElement('canvas');
const clock = params.clock;
canvas.width = clock.block * (clock.bits + 2);
canvas.height = clock.block;
const ctx = canvas.getContext('2d', { willReadFrequently: true });

let unreadable = null;   // the block lumas of the last strip that did not read (for the bench's report)

/** The frame number drawn in the picture on screen, or null when it does not read cleanly. */
function pictureFrame() {
  const w = video.videoWidth, h = video.videoHeight;
  if (!w || !h || video.readyState < 2) return null;
  return readStrip(w, h);
}

function readStrip(w, h) {
  const sx = w / clock.width, sy = h / clock.height;
  ctx.drawImage(video, 0, 0, canvas.width * sx, canvas.height * sy, 0, 0, canvas.width, canvas.height);
  const row = ctx.getImageData(0, clock.block >> 1, canvas.width, 1).data;
  const luma = (i) => {
    const x = i * clock.block + (clock.block >> 1);
    return (row[4 * x] + row[4 * x + 1] + row[4 * x + 2]) / 3;
  };
  const lumas = Array.from({ length: clock.bits + 2 }, (_, i) => Math.round(luma(i)));
  if (lumas[0] < 180 || lumas[1] > 80 || lumas.some((v) => v > 80 && v < 180)) {
    unreadable = lumas;
    return null;
  }
  return lumas.slice(2).reduce((n, v, bit) => (v >= 180 ? n + 2 ** bit : n), 0);
}

/** hls.js with its defaults and lowLatencyMode off: a client without LL-HLS support. */
class PlainPlayer {
  constructor(src, rendition) {
    this.stats = { waiting: 0, stalls: 0, jumps: 0, parts: 0, fragments: 0, playlists: 0, lastJump: null,
                   events: [] };
    const note = (kind, detail) => {
      this.stats.events.push({ kind, at: Date.now(), t: video.currentTime, ...detail });
      if (this.stats.events.length > 20) this.stats.events.shift();
    };
    this.started = false;
    const hls = this.hls = new Hls({ lowLatencyMode: false });
    hls.on(Hls.Events.MANIFEST_PARSED, () => {
      const index = rendition ? hls.levels.findIndex((l) => renditionOf(l) === rendition) : -1;
      if (index >= 0) hls.loadLevel = index;
      video.play().catch(() => {});
    });
    hls.on(Hls.Events.LEVEL_LOADED, () => { this.stats.playlists += 1; });
    hls.on(Hls.Events.FRAG_LOADED, (_e, data) => {
      if (data.part) this.stats.parts += 1; else this.stats.fragments += 1;
    });
    hls.on(Hls.Events.ERROR, (_e, data) => {
      note('hls-error', { details: data.details, fatal: data.fatal, reason: data.reason || data.error?.message });
      if (data.details === Hls.ErrorDetails.BUFFER_STALLED_ERROR) this.stats.stalls += 1;
      if (data.fatal && data.type === Hls.ErrorTypes.MEDIA_ERROR) hls.recoverMediaError();
      else if (data.fatal) hls.startLoad();
    });
    video.addEventListener('playing', () => { this.started = true; });
    video.addEventListener('waiting', () => {
      if (!this.started || video.seeking) return;
      this.stats.waiting += 1;
      note('waiting', {});
    });
    hls.attachMedia(video);
    hls.loadSource(src);
  }

  sample() {
    const hls = this.hls, level = hls.levels?.[hls.currentLevel], shown = hls.playingDate;
    return {
      now_ms: Date.now(), playing_date_ms: shown ? shown.getTime() : null,
      glass_to_glass_ms: shown && this.started ? Date.now() - shown.getTime() : null,
      hls_latency_s: Number.isFinite(hls.latency) ? hls.latency : null,
      target_latency_s: Number.isFinite(hls.targetLatency) ? hls.targetLatency : null,
      rendition: level ? renditionOf(level) : null, low_latency: false, current_time: video.currentTime,
      playback_rate: video.playbackRate, paused: video.paused, ready_state: video.readyState,
    };
  }
}

let player;
if (params.mode === 'll') {
  const ui = { quality: document.getElementById('quality'), latency: document.getElementById('latency'),
               catchUp: document.getElementById('catch-up'), onMessage: () => {}, onRefused: () => {} };
  player = new LivePlayer(video, ui, (url) => url, { lowLatency: true, rendition: params.rendition });
  player.load(params.src);
} else {
  player = new PlainPlayer(params.src, params.rendition);
}
window.glasscastPlayer = {
  get stats() { return player.stats; },
  get started() { return player.started; },
  sample() {
    const frame = pictureFrame();
    return { ...player.sample(), picture_frame: frame, unreadable: frame === null ? unreadable : null };
  },
};
</script></body></html>
"""


@dataclass(frozen=True)
class Case:
    system: str            # "glasscast" | "nginx"
    gop_s: float
    rendition: str | None  # forced rendition (Glasscast), None for nginx's single one
    mode: str              # "ll" | "plain"

    @property
    def name(self) -> str:
        what = "nginx" if self.system == "nginx" else f"{self.rendition}-{self.mode}"
        return f"{what}/gop{self.gop_s:g}"


@dataclass
class Publisher:
    """The ffmpeg CLI publishing the clocked test picture; ``start_s`` is the bound on its capture clock."""

    proc: subprocess.Popen[bytes]
    fps: int
    reports: list[tuple[float, int]] = field(default_factory=list)

    def read_progress(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            line = raw.decode(errors="replace").strip()
            if line.startswith("frame="):
                try:
                    self.reports.append((time.time(), int(line.split("=", 1)[1])))
                except ValueError:
                    continue

    @property
    def start_s(self) -> float | None:
        bounds = [w - (f - 1) / self.fps for w, f in self.reports if f > 0]
        return min(bounds) if bounds else None

    def speed(self, since: float, until: float) -> float | None:
        """Frames encoded per frame of wall time between two wall clock times (1.0: it keeps real time)."""
        inside = [(w, f) for w, f in self.reports if since <= w <= until]
        if len(inside) < 2 or inside[-1][0] <= inside[0][0]:
            return None
        (w0, f0), (w1, f1) = inside[0], inside[-1]
        return round((f1 - f0) / (self.fps * (w1 - w0)), 3)

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()


def clock_filter() -> str:
    """Draw the frame number (white/black guards, then CLOCK_BITS bits) into the top-left corner."""
    b = CLOCK_BLOCK
    width = b * (CLOCK_BITS + 2)
    bit = f"mod(floor(N/pow(2,floor(X/{b})-2)),2)"
    lum = f"if(lt(X,{b}),235,if(lt(X,{2 * b}),16,16+219*{bit}))"
    return (f"[0:v]format=yuv420p,split=2[bg][c];[c]crop={width}:{b}:0:0,geq=lum='{lum}':cb=128:cr=128[clk];"
            f"[bg][clk]overlay=0:0[v]")


def _publisher_priority() -> None:
    """In the publisher's child: run ahead of the server under test (it stands for the streamer's own machine)."""
    try:
        os.nice(PUBLISHER_NICE)
    except OSError:
        pass  # not allowed (not root): its speed is reported per case all the same


def publish(url: str, gop_s: float, seconds: float, log: Path) -> Publisher:
    """ffmpeg: 720p30 testsrc with the picture clock + tone, x264 veryfast zerolatency, fixed GOP, -re."""
    gop = int(FPS * gop_s)
    argv = ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-progress", "pipe:1", "-stats_period",
            "0.25", "-re", "-f", "lavfi", "-i", f"testsrc=size={SIZE}:rate={FPS}",
            "-f", "lavfi", "-i", "sine=frequency=1000:sample_rate=48000", "-filter_complex", clock_filter(),
            "-map", "[v]", "-map", "1:a", "-t", str(seconds), "-c:v", "libx264", "-preset", "veryfast",
            "-tune", "zerolatency", "-pix_fmt", "yuv420p", "-g", str(gop), "-keyint_min", str(gop),
            "-sc_threshold", "0", "-threads", "1", "-c:a", "aac", "-b:a", "128k", "-f", "flv", url]
    with open(log, "ab") as err:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err,
                                preexec_fn=_publisher_priority)
    publisher = Publisher(proc, FPS)
    threading.Thread(target=publisher.read_progress, daemon=True).start()
    return publisher


def summarize(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"p50": None, "p95": None, "n": 0}
    return {"p50": round(statistics.median(values)), "p95": round(percentile(values, 0.95)), "n": len(values)}


def case_figures(case: Case, samples: list[dict[str, Any]], start_s: float | None) -> dict[str, Any]:
    """Glass-to-glass by PDT and by the picture clock, and how the two relate."""
    playing = [s for s in samples if not s["paused"]]
    pdt = [float(s["glass_to_glass_ms"]) for s in playing if s["glass_to_glass_ms"] is not None]
    clock: list[float] = []
    offsets: list[float] = []
    if start_s is not None:
        for s in playing:
            if s.get("picture_frame") is None:
                continue
            captured_ms = 1000 * (start_s + s["picture_frame"] / FPS)
            clock.append(s["now_ms"] - captured_ms)
            if s["playing_date_ms"] is not None:
                offsets.append(s["playing_date_ms"] - captured_ms)
    headline = pdt if case.system == "glasscast" else clock
    return {
        "glass_to_glass_ms": summarize(headline),
        "method": "pdt" if case.system == "glasscast" else "picture_clock",
        "pdt_ms": summarize(pdt), "clock_ms": summarize(clock),
        "ingest_offset_ms": round(statistics.median(offsets)) if offsets else None,
        "clock_unreadable": [s["unreadable"] for s in playing if s.get("unreadable")][:2],
        "renditions": sorted({str(s["rendition"]) for s in samples}),
        "low_latency_samples": sum(1 for s in samples if s["low_latency"]), "samples": len(samples),
        "target_latency_s": samples[-1]["target_latency_s"] if samples else None,
    }


def page_url(origin: str, params: dict[str, Any]) -> str:
    return f"{origin}/__bench__/latency.html#{json.dumps(params, separators=(',', ':'))}"


async def serve_bench_files(page: Page, origin: str) -> None:
    """Answer <origin>/__bench__/* in the browser: the page, hls.js and the player's modules from disk."""

    async def handle(route: Route) -> None:
        path = httpx.URL(route.request.url).path.removeprefix("/__bench__/")
        if path == "latency.html":
            await route.fulfill(status=200, content_type="text/html", body=BENCH_PAGE)
        elif path == "hls.min.js":
            await route.fulfill(status=200, content_type="text/javascript", body=HLS_JS.read_bytes())
        elif path.startswith("js/") and (PLAYER_JS / path[3:]).is_file() and "/" not in path[3:]:
            await route.fulfill(status=200, content_type="text/javascript", body=(PLAYER_JS / path[3:]).read_bytes())
        else:
            await route.fulfill(status=404, body="not a bench file")

    await page.route(f"{origin}/__bench__/**", handle)


async def play_case(browser: Browser, origin: str, src: str, case: Case, args: argparse.Namespace,
                    publisher: Publisher) -> dict[str, Any]:
    page = await new_page(browser)
    try:
        await serve_bench_files(page, origin)
        params = {"src": src, "mode": case.mode, "rendition": case.rendition, "fps": FPS,
                  "clock": {"block": CLOCK_BLOCK, "bits": CLOCK_BITS, "width": 1280, "height": 720}}
        await page.goto(page_url(origin, params), wait_until="domcontentloaded")
        first_frame = first_frame_of(await wait_first_frame(page, timeout_s=args.first_frame_timeout_s))
        await asyncio.sleep(args.settle_s)
        before = await player_stats(page)
        await start_sampler(page, args.sample_ms)
        sampling_from = time.time()
        await asyncio.sleep(args.seconds)
        samples = await stop_sampler(page)
        after = await player_stats(page)
        speed = publisher.speed(sampling_from, time.time())
    finally:
        await page.context.close()
    counts = {k: after[k] - before[k] for k in ("waiting", "stalls", "jumps", "parts", "fragments")}
    return {"case": case.name, "system": case.system, "gop_s": case.gop_s, "rendition": case.rendition,
            "mode": case.mode, **case_figures(case, samples, publisher.start_s),
            "first_frame_ms": round(first_frame), "stalls_since_start": after["waiting"] + after["stalls"],
            "during_sampling": counts, "publisher_speed": speed,
            "publisher_starved": speed is None or speed < STARVED_BELOW,
            # What the player saw last (hls.js errors, stalls, jumps) when it stalled: the reason is in there.
            "player_events": after["events"][-4:] if counts["waiting"] + counts["stalls"] else []}


async def until(check: Any, timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = await check()
        if result:
            return result
        await asyncio.sleep(0.3)
    raise RuntimeError(f"timed out after {timeout_s} s waiting for {what}")


# --- nginx-rtmp ---

def ensure_nginx_rtmp() -> str:
    """nginx with the RTMP module (apt-get install when missing); the nginx binary."""
    nginx = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin")
    if nginx is None or not NGINX_RTMP_MODULE.exists():
        subprocess.run(["apt-get", "install", "-y", "-q", "nginx", "libnginx-mod-rtmp"], check=True,
                       capture_output=True, env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
        nginx = shutil.which("nginx", path="/usr/sbin:/usr/bin")
    if nginx is None or not NGINX_RTMP_MODULE.exists():
        raise RuntimeError("nginx with the RTMP module is not installed and apt-get did not install it")
    return nginx


async def nginx_cases(browser: Browser, tmp: Path, gops: list[float], args: argparse.Namespace) -> list[dict[str, Any]]:
    nginx = ensure_nginx_rtmp()
    return [await nginx_case(browser, nginx, tmp / f"nginx-gop{gop_s:g}", gop_s, args) for gop_s in gops]


async def nginx_case(browser: Browser, nginx: str, work: Path, gop_s: float,
                     args: argparse.Namespace) -> dict[str, Any]:
    """nginx-rtmp with hls_fragment = the GOP, the same publisher, hls.js in plain mode."""
    (work / "hls").mkdir(parents=True)
    rtmp_port, http_port = free_port(), free_port()
    user = "user root;" if os.geteuid() == 0 else ""
    (work / "nginx.conf").write_text(NGINX_CONF.format(
        module=NGINX_RTMP_MODULE, tmp=work, user=user, rtmp_port=rtmp_port, http_port=http_port,
        fragment_ms=int(gop_s * 1000)))
    server = subprocess.Popen([nginx, "-c", str(work / "nginx.conf"), "-p", str(work)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    publisher = None
    origin = f"http://127.0.0.1:{http_port}"
    src = f"{origin}/hls/bench.m3u8"

    async def listed() -> bool:
        async with httpx.AsyncClient(timeout=5) as http:
            r = await http.get(src)
            return r.status_code == 200 and r.text.count("#EXTINF") >= 2

    try:
        await until(lambda: asyncio.to_thread(port_open, "127.0.0.1", rtmp_port), 30, "nginx-rtmp")
        publisher = publish(f"rtmp://127.0.0.1:{rtmp_port}/live/bench", gop_s, args.publish_s,
                            work / "ffmpeg.log")
        await until(listed, 60, "two fragments in nginx's playlist")
        return await play_case(browser, origin, src, Case("nginx", gop_s, None, "plain"), args, publisher)
    finally:
        if publisher is not None:
            publisher.stop()
        server.terminate()
        server.wait()


# --- Glasscast ---

async def glasscast_cases(browser: Browser, tmp: Path, gops: list[float], wanted: list[str],
                          args: argparse.Namespace) -> list[dict[str, Any]]:
    """One `glasscast up` (full ladder); per GOP setting a channel, a publisher and every wanted case."""
    from infra.launcher import GlasscastUp

    results = []
    with GlasscastUp(tmp / "glasscast" / "data", {"GLASSCAST_LADDER_MODE": args.ladder_mode}) as up:
        async with httpx.AsyncClient(base_url=up.url, timeout=30) as http:
            name = f"lat_{uuid.uuid4().hex[:8]}"
            user = {"username": name, "password": "correct horse battery"}
            (await http.post("/v1/users", json=user)).raise_for_status()
            token = (await http.post("/v1/auth/login", json=user)).json()["access_token"]
            await until(lambda: asyncio.to_thread(port_open, "127.0.0.1", up.rtmp_port), 180, "the RTMP ingest")
            for gop_s in gops:
                results += await glasscast_gop(browser, http, up.url, up.rtmp_url, token,
                                               f"{name}_{int(gop_s * 1000)}", gop_s, wanted, tmp, args)
    return results


async def glasscast_gop(browser: Browser, http: httpx.AsyncClient, base: str, rtmp_url: str, token: str,
                        channel: str, gop_s: float, wanted: list[str], tmp: Path,
                        args: argparse.Namespace) -> list[dict[str, Any]]:
    r = await http.post("/v1/channels", json={"name": channel, "title": "latency bench", "category": "Testing"},
                        headers={"Authorization": f"Bearer {token}"})
    r.raise_for_status()
    publisher = publish(f"{rtmp_url}/{r.json()['stream_key']}", gop_s, args.publish_s,
                        tmp / f"ffmpeg-glasscast-gop{gop_s:g}.log")
    results = []
    try:
        rung = args.transcoded if any(kind.startswith("transcoded") for kind in wanted) else None
        await until(lambda: ladder_ready(http, base, channel, rung), 120,
                    f"parts on source and segments on {rung or 'no transcoded rendition'}")
        for kind in wanted:
            rendition = "source" if kind.startswith("source") else args.transcoded
            case = Case("glasscast", gop_s, rendition, kind.split("-")[1])
            master = await master_url(http, base, channel)
            results.append(await play_case(browser, base, master, case, args, publisher))
    finally:
        publisher.stop()
    return results


async def master_url(http: httpx.AsyncClient, base: str, channel: str) -> str:
    """A freshly signed master playlist URL on the gateway's own origin."""
    stream_id = (await http.get(f"/v1/channels/{channel}")).json()["live_stream_id"]
    playback = (await http.get(f"/v1/streams/{stream_id}/playback")).json()
    return base + httpx.URL(playback["hls"]["master"]).raw_path.decode()


async def ladder_ready(http: httpx.AsyncClient, base: str, channel: str, transcoded: str | None) -> bool:
    """Whether the source playlist lists parts and ``transcoded`` (if any) two segments."""
    if not (await http.get(f"/v1/channels/{channel}")).json().get("live_stream_id"):
        return False
    master = httpx.URL(await master_url(http, base, channel))
    token = master.params["token"]
    source = await http.get(master.join("source/index.m3u8").copy_merge_params({"token": token}))
    if source.status_code != 200 or "#EXT-X-PART:" not in source.text:
        return False
    if transcoded is None:
        return True
    rung = await http.get(master.join(f"{transcoded}/index.m3u8").copy_merge_params({"token": token}))
    return rung.status_code == 200 and rung.text.count("#EXTINF") >= 2


def headline(results: list[dict[str, Any]]) -> dict[str, Any]:
    """{case: {p50, p95, clock_p50, first_frame_ms, stalls}} for a quick read."""
    return {r["case"]: {"p50_ms": r["glass_to_glass_ms"]["p50"], "p95_ms": r["glass_to_glass_ms"]["p95"],
                        "clock_p50_ms": r["clock_ms"]["p50"], "first_frame_ms": r["first_frame_ms"],
                        "stalls": r["stalls_since_start"], "publisher_starved": r["publisher_starved"]}
            for r in results}


async def run(args: argparse.Namespace) -> dict[str, Any]:
    gops = [float(g) for g in args.gops.split(",")]
    wanted = [c for c in args.cases.split(",") if c]
    unknown = sorted(set(wanted) - set(CASES))
    if unknown:
        raise SystemExit(f"unknown cases {unknown}; choose from {', '.join(CASES)}")
    results: list[dict[str, Any]] = []
    errors: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        async with chromium() as browser:
            if "nginx" in wanted:
                try:
                    results += await nginx_cases(browser, tmp, gops, args)
                except Exception as exc:  # the Glasscast figures stand on their own
                    errors["nginx"] = f"{type(exc).__name__}: {exc}"
            glasscast = [c for c in wanted if c != "nginx"]
            if glasscast:
                results += await glasscast_cases(browser, tmp, gops, glasscast, args)
    return {"bench": "latency", "headline": headline(results), "cases": results, "errors": errors,
            "aims": AIMS, "ladder_mode": args.ladder_mode,
            "seconds_per_case": args.seconds, "settle_s": args.settle_s, "sample_ms": args.sample_ms,
            "publisher": f"ffmpeg CLI {SIZE}@{FPS} x264 veryfast zerolatency, -re", "cpus": os.cpu_count(),
            "load_average": os.getloadavg()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="sampling time per case")
    parser.add_argument("--settle-s", type=float, default=5.0, help="playback before sampling starts")
    parser.add_argument("--sample-ms", type=int, default=200, help="sampling period in the page (100-250)")
    parser.add_argument("--gops", default="1,2", help="source GOP lengths in seconds, comma-separated")
    parser.add_argument("--cases", default=",".join(CASES), help=f"comma-separated subset of {','.join(CASES)}")
    parser.add_argument("--transcoded", default="480p30", help="the transcoded rendition to force")
    parser.add_argument("--ladder-mode", default="full", help="GLASSCAST_LADDER_MODE (full: every rung transcoded)")
    parser.add_argument("--first-frame-timeout-s", type=float, default=60.0)
    args = parser.parse_args()
    per_case = args.seconds + args.settle_s + 30
    args.publish_s = 300 + per_case * len(CASES)  # outlives every case of one GOP setting
    print(json.dumps(asyncio.run(run(args))))


if __name__ == "__main__":
    main()
