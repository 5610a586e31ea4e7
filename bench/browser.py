"""Driving Debian's Chromium with Playwright: launch it, open Glasscast pages, time the first video frame.

Playwright's own browser downloads are never used: ``/usr/bin/chromium`` (apt)
is launched through ``executable_path`` with the flags below.  What is timed
is read in the page itself: a probe installed before any page script runs
records, on the page's clock (``performance.timeOrigin`` is the start of
navigation), when the <video> presented its first frame
(``requestVideoFrameCallback``'s ``presentationTime``), when it fired
``playing`` and when ``currentTime`` first moved.  Benchmarks import
``first_frame_ms``; the browser tests use the pieces (bench/browser.py is shared by both).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from playwright.async_api import Browser, Page, async_playwright

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--no-first-run", "--disable-component-update", "--disable-sync")
H264_AAC = 'video/mp4; codecs="avc1.64001f,mp4a.40.2"'
ROOT = Path(__file__).resolve().parents[1]
SCREENSHOTS_ENV = "BROWSER_SCREENSHOTS_DIR"
VIEWPORT = {"width": 1400, "height": 900}

# Runs before the page's own scripts (Playwright init scripts are not subject to the page's CSP).
FIRST_FRAME_PROBE = """
(() => {
  const timings = window.__glasscastTimings = {};
  const record = (name, value) => { if (!(name in timings)) timings[name] = value; };
  document.addEventListener('DOMContentLoaded', () => {
    const video = document.querySelector('video');
    if (!video) return;
    if ('requestVideoFrameCallback' in video) {
      video.requestVideoFrameCallback((now, meta) => record('first_frame_ms', meta.presentationTime ?? now));
    }
    video.addEventListener('playing', () => record('playing_ms', performance.now()));
    const moved = () => {
      if (video.currentTime > 0) {
        record('first_progress_ms', performance.now());
        video.removeEventListener('timeupdate', moved);
      }
    };
    video.addEventListener('timeupdate', moved);
  });
})();
"""


def screenshot_dir() -> Path:
    """Where screenshots go: $BROWSER_SCREENSHOTS_DIR, else test-artifacts/screenshots (gitignored)."""
    path = Path(os.environ.get(SCREENSHOTS_ENV) or ROOT / "test-artifacts" / "screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextlib.asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    """Debian's Chromium, headless, driven by Playwright."""
    if not CHROMIUM.exists():
        raise RuntimeError(f"{CHROMIUM} is missing: `apt-get install -y chromium` (make setup does it)")
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=list(CHROMIUM_FLAGS),
                                                   headless=True)
        try:
            yield browser
        finally:
            await browser.close()


async def new_page(browser: Browser, errors: list[str] | None = None) -> Page:
    """A page in a fresh context with the first-frame probe; script errors are appended to ``errors``."""
    context = await browser.new_context(viewport=VIEWPORT)  # type: ignore[arg-type]
    page = await context.new_page()
    await page.add_init_script(FIRST_FRAME_PROBE)
    if errors is not None:
        page.on("pageerror", lambda exc: errors.append(f"{page.url}: {exc}"))
        page.on("console", lambda msg: errors.append(f"{page.url}: {msg.text}")
                if msg.type == "error" and "Content Security Policy" in msg.text else None)
    return page


async def mse_supports(page: Page, mime: str = H264_AAC) -> bool:
    """Whether this browser's Media Source Extensions take ``mime``."""
    return bool(await page.evaluate("mime => window.MediaSource !== undefined && MediaSource.isTypeSupported(mime)",
                                    mime))


async def open_channel(page: Page, base_url: str, channel_name: str) -> None:
    await page.goto(f"{base_url.rstrip('/')}/c/{channel_name}", wait_until="domcontentloaded")


async def wait_first_frame(page: Page, timeout_s: float = 60) -> dict[str, float]:
    """The probe's timings (ms since navigation start) once a frame was shown and playback moved."""
    await page.wait_for_function(
        "() => { const t = window.__glasscastTimings || {}, v = document.querySelector('video');"
        " return v && v.currentTime > 0 && t.first_progress_ms !== undefined"
        " && (t.first_frame_ms !== undefined || !('requestVideoFrameCallback' in v)); }",
        timeout=timeout_s * 1000)
    timings: dict[str, Any] = await page.evaluate("() => window.__glasscastTimings")
    return {k: float(v) for k, v in timings.items()}


def first_frame_of(timings: dict[str, float]) -> float:
    """The first presented frame; without requestVideoFrameCallback, the 'playing' event."""
    return timings.get("first_frame_ms", timings.get("playing_ms", timings["first_progress_ms"]))


async def first_frame_ms(base_url: str, channel_name: str, timeout_s: float = 60) -> float:
    """Milliseconds from navigating to /c/{channel_name} to its first presented video frame."""
    async with chromium() as browser:
        page = await new_page(browser)
        await open_channel(page, base_url, channel_name)
        return first_frame_of(await wait_first_frame(page, timeout_s))


async def resource_timeline(page: Page) -> list[dict[str, Any]]:
    """What the page fetched and when (ms since navigation start), playback tokens left out: where first-frame
    time goes."""
    entries: list[dict[str, Any]] = await page.evaluate(
        "() => performance.getEntriesByType('resource').map(e => ({"
        " url: e.name.replace(/([?&]token=)[^&]*/, '$1…').replace(location.origin, ''),"
        " start_ms: Math.round(e.startTime), end_ms: Math.round(e.responseEnd)}))")
    return entries


async def video_time(page: Page) -> float:
    return float(await page.evaluate("() => document.querySelector('video').currentTime"))


async def wait_video_advances(page: Page, by_s: float, timeout_s: float = 30) -> tuple[float, float]:
    """(start, end) currentTime once playback has moved on by ``by_s`` seconds."""
    start = await video_time(page)
    await page.wait_for_function("([start, by]) => document.querySelector('video').currentTime >= start + by",
                                 arg=[start, by_s], timeout=timeout_s * 1000)
    return start, await video_time(page)


async def quality_levels(page: Page) -> list[str]:
    """The quality menu's entries other than Auto."""
    labels: list[str] = await page.eval_on_selector_all(
        "#quality option", "options => options.filter(o => o.value !== '-1').map(o => o.textContent)")
    return labels


# --- Live latency: sampling the player in the page (tests/browser/test_llhls_latency.py, bench/latency.py) ---

QUALITY_KEY = "glasscast.quality"  # where the channel page remembers the viewer's quality choice
PART_URI = re.compile(r"/\d{8}\.\d+\.m4s(\?|$)")  # an LL-HLS part (<msn>.<part>.m4s), not a whole segment

# Runs in the page: every `every` ms, push `window.glasscastPlayer.sample()` (the channel page's player, or a
# bench page's stand-in) onto window.__glasscastSamples, for at most `limit` samples.
START_SAMPLER = """
([every, limit]) => {
  clearInterval(window.__glasscastSampler);
  const samples = window.__glasscastSamples = [];
  window.__glasscastSampler = setInterval(() => {
    const player = window.glasscastPlayer;
    if (player && samples.length < limit) samples.push(player.sample());
  }, every);
}
"""


async def prefer_rendition(page: Page, rendition: str) -> None:
    """Have the channel page's player start on ``rendition`` (as if the viewer had chosen it before)."""
    await page.add_init_script(f"localStorage.setItem({json.dumps(QUALITY_KEY)}, {json.dumps(rendition)})")


async def player_stats(page: Page) -> dict[str, Any]:
    """The page player's counters: waiting, stalls, jumps, parts, fragments, playlists."""
    stats: dict[str, Any] = await page.evaluate("() => ({...window.glasscastPlayer.stats})")
    return stats


async def start_sampler(page: Page, every_ms: int, limit: int = 100_000) -> None:
    """Sample the player every ``every_ms`` in the page itself (no round trip per sample)."""
    await page.evaluate(START_SAMPLER, [every_ms, limit])


async def stop_sampler(page: Page) -> list[dict[str, Any]]:
    """Stop sampling; the samples taken (each the player's ``sample()``: now_ms, glass_to_glass_ms, ...)."""
    samples: list[dict[str, Any]] = await page.evaluate(
        "() => { clearInterval(window.__glasscastSampler); return window.__glasscastSamples || []; }")
    return samples


def part_requests(timeline: list[dict[str, Any]]) -> list[str]:
    """The LL-HLS part URIs in a resource timeline (``resource_timeline``)."""
    return [entry["url"] for entry in timeline if PART_URI.search(entry["url"])]


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``values`` by nearest rank."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("no values")
    return ordered[min(len(ordered) - 1, max(0, int(round(q * (len(ordered) - 1)))))]


async def keep_resource_timings(page: Page, entries: int = 10_000) -> None:
    """Let the page keep ``entries`` resource timings (Chromium keeps 250: ~25 s of LL-HLS requests)."""
    await page.add_init_script(f"performance.setResourceTimingBufferSize({int(entries)})")


def part_gaps_ms(timeline: list[dict[str, Any]], since_ms: float = 0) -> list[float]:
    """Time between consecutive LL-HLS part responses (ms, response end to response end) after ``since_ms``."""
    ends = sorted(e["end_ms"] for e in timeline if PART_URI.search(e["url"]) and e["end_ms"] >= since_ms)
    return [b - a for a, b in zip(ends, ends[1:], strict=False)]
