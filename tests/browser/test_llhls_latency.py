"""LL-HLS end to end: `glasscast up`, the real ffmpeg CLI publishing 720p30 with 2 s GOPs, and the channel page in
Debian's Chromium playing the source rendition with hls.js in low-latency mode.

For at least PLAY_S seconds of playback after the first frame, the page's player is sampled every SAMPLE_MS in
the page itself (``window.glasscastPlayer.sample()``): glass-to-glass is the wall clock minus the program
date-time of the frame on screen (hls.js ``playingDate``; the PDT is when the frame's keyframe reached the
ingest plus its media offset, so this is ingest-to-screen).  Asserted: no stall after the start (no ``waiting``
event, no hls.js BUFFER_STALLED_ERROR), parts were loaded (hls.js part loads and ``<msn>.<i>.m4s`` requests in
the resource timeline), and the median glass-to-glass over the last WINDOW_S seconds is under BOUND_MS: a
loose bound for CI on a shared machine; the targets (p50 < 1.5 s, p95 < 2 s) are bench/latency.py's.  Then a
network outage: the player stalls, and once the network is back it jumps to the live edge instead of staying
behind (measured against the live edge hls.js knows, so that a publisher slowed by the machine's load does not
count against the player).

The platform runs with the default (tiered) ladder: one viewer gets the source and audio renditions, which the
ingest cuts into parts itself.  With GLASSCAST_LADDER_MODE=full the media workers' transcoding competes with
the publisher and Chromium for this machine's two cores; ffmpeg then fell below real time (0.73x measured) and
any player at the live edge stalls.  bench/latency.py measures the full ladder, with the publisher's speed.
The publisher (the streamer's own computer, in real life) runs at a higher priority than the platform.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import statistics
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from playwright.async_api import Page, Route
from playwright.async_api import TimeoutError as PlaywrightTimeout

from bench.browser import (
    chromium,
    first_frame_of,
    keep_resource_timings,
    new_page,
    open_channel,
    part_gaps_ms,
    part_requests,
    percentile,
    player_stats,
    prefer_rendition,
    resource_timeline,
    screenshot_dir,
    start_sampler,
    stop_sampler,
    video_time,
    wait_first_frame,
)
from infra.embedded.process import port_open
from infra.launcher import GlasscastUp
from media.testpattern import ffmpeg_push
from tests.waiting import eventually

pytestmark = [pytest.mark.browser, pytest.mark.integration]

PLAY_S = 22.0        # media seconds played after the first frame (the issue asks for at least 20)
SAMPLE_MS = 250
WINDOW_S = 10.0      # the median is taken over the samples of the last WINDOW_S seconds
BOUND_MS = 2500
PUBLISH_S = 240      # the publisher outlives both tests' bounded waits
AFTER_RESTART_S = 8.0  # media seconds the page plays after the gateway is killed
OUTAGE_S = 4.0       # how long the source rendition's requests fail in the stall test
PUBLISHER_NICE = -10
STALL_COUNTERS = ("waiting", "stalls")
SOURCE_REQUESTS = re.compile(r"/hls/[^/]+/source/")


@pytest.fixture(scope="module")
def ll_stream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[GlasscastUp, str]]:
    """`glasscast up` (default ladder), a channel, and the ffmpeg CLI publishing 720p30 with 2 s GOPs to it,
    once its source playlist lists LL-HLS parts."""
    tmp = tmp_path_factory.mktemp("llhls")
    with GlasscastUp(tmp / "data") as up, httpx.Client(base_url=up.url, timeout=10) as http:
        name = f"ll_{uuid.uuid4().hex[:8]}"
        user = {"username": name, "password": "correct horse battery"}
        http.post("/v1/users", json=user).raise_for_status()
        login = http.post("/v1/auth/login", json=user).json()
        r = http.post("/v1/channels", json={"name": name, "title": "LL-HLS latency", "category": "Testing"},
                      headers={"Authorization": f"Bearer {login['access_token']}"})
        r.raise_for_status()
        eventually(lambda: port_open("127.0.0.1", up.rtmp_port), 120, "the RTMP ingest", every_s=0.3)
        push = ffmpeg_push(up.rtmp_url, r.json()["stream_key"], PUBLISH_S, size="1280x720", fps=30, gop_s=2.0,
                           log=tmp / "ffmpeg.log")
        _ahead_of_the_platform(push.pid)
        try:
            eventually(lambda: _source_parts_listed(http, up, name), 90, "LL-HLS parts in the source playlist",
                       every_s=0.5)
            yield up, name
        finally:
            push.kill()
            push.wait()


def _ahead_of_the_platform(pid: int) -> None:
    """Run the publisher ahead of the platform and the browser: it stands for the streamer's own computer, and a
    publisher starved below real time would make any player at the live edge stall."""
    try:
        os.setpriority(os.PRIO_PROCESS, pid, PUBLISHER_NICE)
    except OSError:
        pass  # not allowed (not root): the machine has to keep up by itself


def _source_parts_listed(http: httpx.Client, up: GlasscastUp, channel: str) -> bool:
    """Whether the live stream's source playlist lists LL-HLS parts (the page can start in LL mode)."""
    stream_id = http.get(f"/v1/channels/{channel}").json().get("live_stream_id")
    if not stream_id:
        return False
    playback = http.get(f"/v1/streams/{stream_id}/playback").json()
    master = httpx.URL(up.url + httpx.URL(playback["hls"]["master"]).raw_path.decode())
    media = http.get(master.join("source/index.m3u8").copy_merge_params({"token": playback["token"]}))
    return media.status_code == 200 and "#EXT-X-PART:" in media.text and "#EXT-X-PART-INF:" in media.text


async def _watch_source(page: Page, url: str, channel: str) -> float:
    """Open the channel page with the source rendition chosen; ms to its first frame once playback runs."""
    await keep_resource_timings(page)
    await prefer_rendition(page, "source")
    await open_channel(page, url, channel)
    first_frame = first_frame_of(await wait_first_frame(page, timeout_s=60))
    await page.wait_for_function("() => window.glasscastPlayer && window.glasscastPlayer.started", timeout=30_000)
    return first_frame


def _figures(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Glass-to-glass over the whole run and over its last WINDOW_S seconds (ms)."""
    timed = [s for s in samples if s["glass_to_glass_ms"] is not None]
    assert timed, f"no sample had a program date-time on screen: {samples[-3:]}"
    end = timed[-1]["now_ms"]
    window = [s["glass_to_glass_ms"] for s in timed if s["now_ms"] >= end - WINDOW_S * 1000]
    every = [s["glass_to_glass_ms"] for s in timed]
    return {
        "window_p50_ms": round(statistics.median(window)), "window_p95_ms": percentile(window, 0.95),
        "window_max_ms": max(window), "window_samples": len(window),
        "run_p50_ms": round(statistics.median(every)), "run_p95_ms": percentile(every, 0.95),
        "run_max_ms": max(every), "samples": len(every),
        "renditions": sorted({str(s["rendition"]) for s in timed}),
        "low_latency": all(s["low_latency"] for s in timed),
        "target_latency_s": timed[-1]["target_latency_s"], "hls_latency_s": timed[-1]["hls_latency_s"],
        "min_buffer_ahead_s": round(min(s["buffer_ahead_s"] for s in timed), 3),
    }


async def test_source_plays_low_latency_without_stalls(ll_stream: tuple[GlasscastUp, str]) -> None:
    up, channel = ll_stream
    errors: list[str] = []
    async with chromium() as browser:
        page = await new_page(browser, errors)
        first_frame = await _watch_source(page, up.url, channel)
        before = await player_stats(page)
        started_at = await video_time(page)
        sampling_from_ms = await page.evaluate("() => performance.now()")
        await start_sampler(page, SAMPLE_MS)
        # Play PLAY_S seconds of media: a stall makes this take longer, never shorter.
        await page.wait_for_function("t => document.querySelector('video').currentTime >= t",
                                     arg=started_at + PLAY_S, timeout=(PLAY_S * 2 + 20) * 1000)
        samples = await stop_sampler(page)
        after = await player_stats(page)
        timeline = await resource_timeline(page)
        readout = await page.text_content("#latency")
        await page.screenshot(path=str(screenshot_dir() / "llhls-channel.png"))

    figures = _figures(samples)
    stalls = {k: after[k] - before[k] for k in STALL_COUNTERS}
    parts = part_requests(timeline)
    gaps = part_gaps_ms(timeline, sampling_from_ms)
    report = {"first_frame_ms": round(first_frame), **figures, "stalls_after_start": stalls,
              # A stall with a long gap between part responses: the parts were late (server or machine), not
              # the player; the load average says whether the machine was busy with more than this test.
              "max_part_gap_ms": round(max(gaps)) if gaps else None, "load_average": os.getloadavg(),
              "cpus": os.cpu_count(),
              "jumps_to_live": after["jumps"] - before["jumps"], "hls_part_loads": after["parts"],
              "hls_segment_loads": after["fragments"], "part_requests": len(parts), "readout": readout,
              "player_events": after["events"]}
    (screenshot_dir() / "llhls-latency.json").write_text(json.dumps(report, indent=2))
    print(f"\nLL-HLS glass-to-glass (source, 2 s GOP): {json.dumps(report)}")

    assert not errors, errors
    assert figures["renditions"] == ["source"] and figures["low_latency"], report
    assert after["parts"] > 0 and parts, f"no LL-HLS part was loaded: {report}"
    assert re.fullmatch(r"Latency \d+\.\d s", readout or ""), readout
    assert stalls == {k: 0 for k in STALL_COUNTERS}, f"playback stalled after the start: {report}"
    assert figures["window_p50_ms"] < BOUND_MS, (
        f"median glass-to-glass over the last {WINDOW_S:.0f} s is {figures['window_p50_ms']} ms "
        f"(p95 {figures['window_p95_ms']} ms), not under {BOUND_MS} ms: {report}")


async def test_player_jumps_back_to_live_after_a_stall(ll_stream: tuple[GlasscastUp, str]) -> None:
    up, channel = ll_stream
    outage = {"on": False}

    async def network(route: Route) -> None:
        if outage["on"]:
            await route.abort("connectionrefused")
        else:
            await route.continue_()

    async with chromium() as browser:
        page = await new_page(browser)
        await page.route(SOURCE_REQUESTS, network)
        await _watch_source(page, up.url, channel)
        await _wait_live(page, "before the outage")
        before = await player_stats(page)
        outage["on"] = True
        await asyncio.sleep(OUTAGE_S)   # the outage itself: playback runs out of data and waits
        outage["on"] = False
        stalled = await player_stats(page)
        await _wait_live(page, "after the outage", jumps_after=before["jumps"])
        after = await player_stats(page)
    print(f"\nafter a {OUTAGE_S:.0f} s outage: {json.dumps(after)}")
    assert stalled["waiting"] + stalled["stalls"] > before["waiting"] + before["stalls"], (before, stalled)
    assert after["lastJump"] is not None and after["lastJump"]["to"] > after["lastJump"]["from"], after


async def test_a_gateway_restart_mid_stream_does_not_break_a_playing_client(ll_stream: tuple[GlasscastUp, str]) -> None:
    """The gateway is killed (SIGKILL) while the page plays; `glasscast up` restarts it, the new one rebuilds the
    live edge from the log, and the same page plays on at the live edge with media from the new gateway."""
    up, channel = ll_stream
    async with chromium() as browser:
        page = await new_page(browser)
        await _watch_source(page, up.url, channel)
        await _wait_live(page, "before the gateway restart")
        old = up.status()["processes"]["gateway"]
        os.kill(old["pid"], signal.SIGKILL)
        killed_at = await video_time(page)

        def restarted() -> dict[str, Any] | None:
            now = up.status()["processes"]["gateway"]
            return now if now["alive"] and now["pid"] != old["pid"] else None

        new = await asyncio.to_thread(eventually, restarted, 60, "the gateway restarted", every_s=0.2)
        before = await player_stats(page)
        loaded_before = before["parts"] + before["fragments"]
        # Plays on: AFTER_RESTART_S more seconds of media, and back at the live edge, without a reload.
        await page.wait_for_function("t => document.querySelector('video').currentTime >= t",
                                     arg=killed_at + AFTER_RESTART_S, timeout=(AFTER_RESTART_S * 3 + 30) * 1000)
        await _wait_live(page, "after the gateway restart")
        after = await player_stats(page)
        same_page = await page.evaluate("() => performance.getEntriesByType('navigation').length")
    print(f"\nafter a gateway restart: {json.dumps(after)}")
    assert new is not None
    assert new["restarts"] == old["restarts"] + 1 and new["last_exit"] == "signal SIGKILL", new
    # Parts, or whole segments where the player caught up after a stall on a busy machine (hls.js then loads
    # the segments it jumped into): media either way, and only the restarted gateway could serve it.
    assert after["parts"] + after["fragments"] > loaded_before, f"no media loaded from the restarted gateway: {after}"
    assert same_page == 1  # the page was not reloaded: the player itself recovered


async def _wait_live(page: Page, when: str, jumps_after: int | None = None, timeout_s: float = 30) -> None:
    """Until the player is under BOUND_MS behind the live edge it knows (and, with ``jumps_after``, has jumped
    since).

    Measured as hls.js's ``latency`` (the playlist's live edge, aged since it was loaded, minus the playhead), not
    glass-to-glass: what this test checks is the player's recovery, and glass-to-glass also counts how late the
    stream itself is.  Under the whole suite's load the publisher and the ingest fall behind real time and the
    program date-times with them, so glass-to-glass can stay above any bound with the player at the very edge.
    A player that stayed behind after the outage is OUTAGE_S plus its earlier latency behind: well over BOUND_MS.
    """
    try:
        await page.wait_for_function(
            "([bound, jumps]) => { const p = window.glasscastPlayer; const s = p.sample();"
            " return s.hls_latency_s !== null && s.hls_latency_s * 1000 < bound"
            " && (jumps === null || p.stats.jumps > jumps); }",
            arg=[BOUND_MS, jumps_after], timeout=timeout_s * 1000)
    except PlaywrightTimeout:
        state = await page.evaluate("() => ({stats: window.glasscastPlayer.stats,"
                                    " now: window.glasscastPlayer.sample()})")
        pytest.fail(f"{when}: not back under {BOUND_MS} ms behind the live edge (with a jump to live: "
                    f"{jumps_after is not None}) within {timeout_s:.0f} s; load average {os.getloadavg()} on "
                    f"{os.cpu_count()} cores; player {json.dumps(state)}")
