"""Videos, chat replay and clips in a real browser against the whole platform (issue 15).

A streamer publishes with the ffmpeg CLI and says three things in chat at known moments; from the
channel page (signed in) they clip the last 30 s of the live stream, then end the broadcast.  The
channel's Videos tab lists the video with its thumbnail.  The video page plays it from start to end,
and each chat message appears when the playhead's program date-time reaches the time it was sent
(within 0.5 s, measured in the page the moment each line is added).  Seeking to the middle shows
the messages up to that point and queues the rest; hovering the seek bar shows a tile of the
storyboard's sprite sheet.  A clip is made from the video with the page's Clip button; both clips
play in their clip page, first from their playlist as while the MP4 is being made (the clip
answer's ``mp4_url`` taken out by the test, so the page cannot see the MP4) starting where the
clip starts in its GOP-aligned segments, then as the MP4; their MP4s decode with PyAV to the
clip's duration within one frame (the remux hides the GOP's lead-in with an edit list, so the
start is exact).  Then the owner deletes the video from its page (the clip still plays) and sets
the channel's video retention on the dashboard.
"""

from __future__ import annotations

import asyncio
import io
import json
import re
import time
import uuid
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import httpx
import pytest
from playwright.async_api import Page, Route, expect

from bench.browser import chromium, new_page, screenshot_dir
from infra.launcher import GlasscastUp
from media.testpattern import ffmpeg_push
from tests.browser.test_web_app import CSP_SCRIPT_SELF, EVENT_ATTRIBUTE, INLINE_SCRIPT
from tests.integration.chat_client import Client
from tests.waiting import eventually_async

pytestmark = [pytest.mark.browser, pytest.mark.integration]

PASSWORD = "correct horse battery"
STREAM_S = 45                      # what ffmpeg publishes (real time)
CHAT_AT_S = (6.0, 14.0, 30.0)      # seconds after the stream is live: two before the middle, one after
LIVE_CLIP_AT_S = 36.0              # the live clip (the last 30 s) is made this long after going live
END_AT_S = 40.0                    # the broadcast is ended through the API then
VOD_CLIP_PLAYHEAD_S = 25.0         # the VOD clip: the 25 s (all there is) ending here
CHAT_WITHIN_MS = 500               # issue 15: messages appear within 0.5 s of their moment
LIVE_TIMEOUT_S = 60
UI_TIMEOUT_MS = 30_000

# Records, for each replayed line as it is added, the playhead's program date-time at that moment.
REPLAY_OBSERVER = """() => {
  window.replaySeen = [];
  const list = document.getElementById('replay-messages');
  new MutationObserver((mutations) => {
    for (const m of mutations) for (const node of m.addedNodes) {
      if (!node.dataset || !node.dataset.id) continue;
      window.replaySeen.push({id: node.dataset.id, sent_at_ms: Number(node.dataset.sentAtMs),
                              playing_date_ms: window.glasscastVod.player.playingDateMs(),
                              current_time: document.getElementById('video').currentTime});
    }
  }).observe(list, {childList: true});
}"""


def _account(http: httpx.Client, username: str) -> dict[str, Any]:
    r = http.post("/v1/users", json={"username": username, "password": PASSWORD})
    assert r.status_code == 201, r.text
    r = http.post("/v1/auth/login", json={"username": username, "password": PASSWORD})
    assert r.status_code == 200, r.text
    login: dict[str, Any] = r.json()
    return login


async def _sign_in_by_storage(page: Page, url: str, login: dict[str, Any]) -> None:
    """What the dashboard keeps after a login (gateways/web/static/js/session.js), put there directly."""
    session = {"token": login["access_token"], "user": login["user"],
               "expiresAtMs": int(time.time() * 1000) + int(login["expires_in"]) * 1000}
    await page.goto(f"{url}/healthz")
    await page.evaluate("s => localStorage.setItem('glasscast.session', s)", json.dumps(session))


def test_video_and_clip_pages_answer_with_csp_and_only_clips_may_be_framed(live_platform: GlasscastUp) -> None:
    with httpx.Client(base_url=live_platform.url, timeout=10) as http:
        some = uuid.uuid4()
        refused, allowed = "frame-ancestors 'none'", "frame-ancestors *"
        for path, framing in ((f"/videos/{some}", refused), (f"/clips/{some}", allowed),
                              (f"/clips/{some}?embed=1", allowed), ("/c/somebody", refused)):
            r = http.get(path)
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/html"), path
            policy = r.headers["content-security-policy"]
            assert CSP_SCRIPT_SELF.search(policy) and framing in policy, (path, policy)
            assert not INLINE_SCRIPT.search(r.text) and not EVENT_ATTRIBUTE.search(r.text), path
        for path in ("/videos/not-a-video", "/clips/xyz"):
            assert http.get(path).status_code == 404, path


def _decoded_duration_s(mp4: bytes) -> tuple[float, Fraction]:
    """How long the MP4's video lasts as decoded (lead-in hidden by its edit list), and its frame time."""
    with av.open(io.BytesIO(mp4), mode="r") as container:
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate
        assert rate, "the MP4's video has no frame rate"
        frame_s = Fraction(1) / Fraction(rate)
        first = last = None
        for frame in container.decode(stream):
            if frame.time is None:
                continue
            first = frame.time if first is None else min(first, frame.time)
            last = frame.time if last is None else max(last, frame.time)
        assert first is not None and last is not None, "the MP4 decodes to no video frame"
        return float(last - first + frame_s), frame_s


async def _clip_mp4(http: httpx.AsyncClient, clip_id: str) -> tuple[dict[str, Any], bytes]:
    async def ready() -> dict[str, Any]:
        clip: dict[str, Any] = (await http.get(f"/v1/clips/{clip_id}")).json()
        assert clip.get("mp4_status") != "failed", clip
        return clip if clip.get("mp4_url") else {}
    clip: dict[str, Any] = await eventually_async(ready, 120, f"clip {clip_id}'s MP4", every_s=0.5)
    r = await http.get(clip["mp4_url"])
    assert r.status_code == 200 and r.headers["content-type"].startswith("video/mp4"), r.headers
    return clip, r.content


async def _plays_clip(page: Page, url: str, clip_id: str, shots: Path, name: str) -> tuple[str, float]:
    """Open a clip page; once it plays, the way it plays ('mp4' or 'hls') and where playback started."""
    await page.goto(f"{url}/clips/{clip_id}", wait_until="domcontentloaded")
    await page.evaluate("""() => { const v = document.getElementById('video');
        v.addEventListener('playing', () => { window.firstPlayingAt ??= v.currentTime; }); }""")
    await page.wait_for_function(
        "() => { const v = document.getElementById('video'); return v.currentTime > 1 && !v.paused; }",
        timeout=60_000)
    await expect(page.locator("#clip-title")).not_to_have_text("Loading…")
    await page.screenshot(path=str(shots / name))
    mode: str = await page.evaluate("() => window.glasscastClip.mode")
    started: float = await page.evaluate("() => window.firstPlayingAt ?? -1")
    return mode, started


async def _without_mp4(route: Route) -> None:
    """The clip answer as it is before the media workers made the MP4 (so the page plays the playlist)."""
    response = await route.fetch()
    clip = await response.json()
    await route.fulfill(response=response, json={**clip, "mp4_url": None, "mp4_status": "processing"})


async def test_vod_chat_replay_storyboard_and_clips(live_platform: GlasscastUp, tmp_path: Path) -> None:
    url, up = live_platform.url, live_platform
    tag = uuid.uuid4().hex[:8]
    streamer, channel = f"vod_{tag}", f"vodch_{tag}"
    shots = screenshot_dir()
    errors: list[str] = []
    with httpx.Client(base_url=url, timeout=10) as setup:
        login = _account(setup, streamer)
        token = login["access_token"]
        r = setup.post("/v1/channels", json={"name": channel, "title": "Replay me", "category": "Games"},
                      headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 201, r.text
        channel_id, stream_key = r.json()["id"], r.json()["stream_key"]
    auth = {"Authorization": f"Bearer {token}"}

    async with chromium() as browser, httpx.AsyncClient(base_url=url, timeout=30) as http:
        page = await new_page(browser, errors)
        await _sign_in_by_storage(page, url, login)
        push = ffmpeg_push(up.rtmp_url, stream_key, STREAM_S, log=tmp_path / "ffmpeg.log")
        try:
            async def live() -> str:
                answer = (await http.get(f"/v1/channels/{channel}")).json()
                return str(answer.get("live_stream_id") or "")
            video_id: str = await eventually_async(live, LIVE_TIMEOUT_S, f"{channel} live", every_s=0.1)
            live_at = time.monotonic()

            # Three messages at known moments, from the broadcaster's own chat socket.
            chat = await Client.open(url.replace("http", "ws", 1) + f"/v1/chat/ws?channel={channel_id}", token)
            said: list[str] = []
            try:
                for i, at_s in enumerate(CHAT_AT_S):
                    await asyncio.sleep(max(0.0, live_at + at_s - time.monotonic()))
                    ack = await chat.say(f"replay line {i + 1} Kappa")
                    assert ack["type"] == "ACK", ack
                    said.append(ack["id"])
            finally:
                await chat.ws.close()

            # The live clip, from the channel page's Clip button.
            await page.goto(f"{url}/c/{channel}", wait_until="domcontentloaded")
            clip_button = page.locator("#clip-button")
            await expect(clip_button).to_be_visible(timeout=UI_TIMEOUT_MS)
            await asyncio.sleep(max(0.0, live_at + LIVE_CLIP_AT_S - time.monotonic()))
            await clip_button.click()
            link = page.locator("#clip-status a.clip-link")
            await expect(link).to_be_visible(timeout=UI_TIMEOUT_MS)
            live_clip_id = str(await link.get_attribute("href")).rsplit("/", 1)[-1]
            await page.screenshot(path=str(shots / "channel-live-clip.png"))

            await asyncio.sleep(max(0.0, live_at + END_AT_S - time.monotonic()))
            r = await http.post(f"/v1/streams/{video_id}/end", headers=auth)
            assert r.status_code in (200, 202, 204), r.text
        finally:
            push.kill()
            push.wait()

        # The video, once listed with its previews.
        async def listed() -> dict[str, Any]:
            videos = (await http.get(f"/v1/channels/{channel_id}/videos")).json()["data"]
            mine: list[dict[str, Any]] = [v for v in videos if v["id"] == video_id and v["storyboard"]]
            return mine[0] if mine else {}
        video: dict[str, Any] = await eventually_async(listed, 120, "the video listed with its storyboard")
        replay = (await http.get(f"/v1/chat/{channel_id}/messages",
                                 params={"around_timestamp": video["started_at_ms"], "before": 0,
                                         "after": 200})).json()["messages"]
        sent_at = {m["message_id"]: m["sent_at_ms"] for m in replay}
        assert [m["message_id"] for m in replay] == said, replay

        # The channel's Videos tab lists it, with its thumbnail.
        await page.goto(f"{url}/c/{channel}", wait_until="domcontentloaded")
        card = page.locator(f'#library-list a.media-card[href="/videos/{video_id}"]')
        await expect(card).to_be_visible(timeout=UI_TIMEOUT_MS)
        await expect(card.locator(".card-title")).to_have_text("Replay me")
        await card.locator("img.thumb").evaluate(
            "img => img.complete && img.naturalWidth > 0 || new Promise((ok, no) => {"
            " img.addEventListener('load', ok); img.addEventListener('error', no); })")
        assert await card.locator("img.thumb").evaluate("img => img.naturalWidth") > 0
        await page.locator("#library").screenshot(path=str(shots / "channel-videos-tab.png"))
        await page.locator("#tab-clips").click()
        await expect(page.locator(f'#library-list a.media-card[href="/clips/{live_clip_id}"]')).to_be_visible(
            timeout=UI_TIMEOUT_MS)

        # The video page plays from start to end, chat in time with the playhead.
        await page.goto(f"{url}/videos/{video_id}", wait_until="domcontentloaded")
        await page.wait_for_function("() => window.glasscastVod && document.getElementById('replay-messages')")
        await page.evaluate(REPLAY_OBSERVER)
        await page.wait_for_function("() => document.getElementById('video').currentTime > 0.5", timeout=60_000)
        duration_s = video["duration_ms"] / 1000
        await page.wait_for_function("() => document.getElementById('video').ended",
                                     timeout=int((duration_s + 60) * 1000))
        seen: list[dict[str, Any]] = await page.evaluate("() => window.replaySeen")
        first_seen = {s["id"]: s for s in reversed(seen)}
        gaps_ms = []
        for message_id in said:
            shown = first_seen.get(message_id)
            assert shown is not None and shown["playing_date_ms"] is not None, (message_id, seen)
            gaps_ms.append(shown["playing_date_ms"] - sent_at[message_id])
        assert all(abs(g) <= CHAT_WITHIN_MS for g in gaps_ms), gaps_ms
        await page.screenshot(path=str(shots / "video-replay-end.png"))

        # Seeking to the middle shows the messages up to that point; the rest follow as it plays.
        await page.evaluate("() => document.getElementById('video').pause()")
        bar = page.locator("#seek-bar")
        box = await bar.bounding_box()
        assert box is not None
        await bar.click(position={"x": box["width"] / 2, "y": box["height"] / 2})

        async def middle_window() -> list[str]:
            state = await page.evaluate("""() => ({
                at: window.glasscastVod.player.playingDateMs(),
                seeking: document.getElementById('video').seeking,
                loading: window.glasscastVod.replay.loading,
                ids: [...document.querySelectorAll('#replay-messages li[data-id]')].map((li) => li.dataset.id)})""")
            if state["seeking"] or state["loading"] or state["at"] is None:
                return []
            expected = [m for m in said if sent_at[m] <= state["at"]]
            ids: list[str] = state["ids"]
            return ids if ids == expected else []
        shown_ids: list[str] = await eventually_async(middle_window, 30, "the chat window around the middle")
        assert shown_ids == said[:2], shown_ids
        await page.screenshot(path=str(shots / "video-replay-middle.png"))

        # Hovering the seek bar shows the storyboard tile for that time.
        await bar.hover(position={"x": box["width"] * 0.3, "y": box["height"] / 2})
        tile = page.locator(".seek-tile")
        await expect(page.locator(".seek-preview")).to_be_visible(timeout=UI_TIMEOUT_MS)
        await expect(tile).to_be_visible()
        board = video["storyboard"]
        assert (await tile.get_attribute("data-url") or "").endswith(board["sprite_url"])
        style = await tile.evaluate("t => { const s = getComputedStyle(t); return {image: s.backgroundImage, "
                                    "width: t.clientWidth, height: t.clientHeight}; }")
        assert board["sprite_url"] in style["image"] and style["width"] == board["tile_width"], style
        sprite = await http.get(board["sprite_url"])
        assert sprite.status_code == 200 and sprite.headers["content-type"] == "image/jpeg"
        await page.locator(".stage").screenshot(path=str(shots / "video-seek-preview.png"))

        # A clip of the video: the 25 s ending at the playhead, from the page's Clip button.
        await page.evaluate(f"() => {{ document.getElementById('video').currentTime = {VOD_CLIP_PLAYHEAD_S}; }}")
        await page.wait_for_function(
            f"() => !document.getElementById('video').seeking && "
            f"Math.abs(document.getElementById('video').currentTime - {VOD_CLIP_PLAYHEAD_S}) < 0.5")
        await page.locator("#clip-button").click()
        vod_link = page.locator("#clip-status a.clip-link")
        await expect(vod_link).to_be_visible(timeout=UI_TIMEOUT_MS)
        vod_clip_id = str(await vod_link.get_attribute("href")).rsplit("/", 1)[-1]

        # Both clips play in their page, and their MP4s decode to the clip's duration.
        modes = {}
        report = {}
        for clip_id, name in ((live_clip_id, "live"), (vod_clip_id, "vod")):
            # First as while its MP4 is being made: the clip's playlist, from where the clip starts in it.
            answer = re.compile(rf"/v1/clips/{clip_id}$")
            await page.route(answer, _without_mp4)
            hls_mode, started_s = await _plays_clip(page, url, clip_id, shots, f"clip-{name}-playlist.png")
            await page.unroute(answer)
            start_offset_s = (await http.get(f"/v1/clips/{clip_id}")).json()["playback"]["start_offset_s"]
            assert hls_mode == "hls" and abs(started_s - start_offset_s) < 0.5, (started_s, start_offset_s)
            clip, mp4 = await _clip_mp4(http, clip_id)
            modes[name], _ = await _plays_clip(page, url, clip_id, shots, f"clip-{name}.png")
            assert modes[name] == "mp4"
            decoded_s, frame_s = await asyncio.to_thread(_decoded_duration_s, mp4)
            expected_s = clip["duration_ms"] / 1000
            report[name] = {"expected_s": expected_s, "decoded_s": round(decoded_s, 4), "mode": modes[name]}
            assert abs(decoded_s - expected_s) <= float(frame_s) + 0.001, report
        assert report["vod"]["expected_s"] == VOD_CLIP_PLAYHEAD_S and report["live"]["expected_s"] == 30, report
        await page.goto(f"{url}/clips/{vod_clip_id}?embed=1", wait_until="domcontentloaded")
        await expect(page.locator(".topbar")).to_be_hidden(timeout=UI_TIMEOUT_MS)
        await page.screenshot(path=str(shots / "clip-embed.png"))

        # The owner deletes the video from its page; its clips stay.
        await page.goto(f"{url}/videos/{video_id}", wait_until="domcontentloaded")
        delete = page.locator("#delete-video")
        await expect(delete).to_be_visible(timeout=UI_TIMEOUT_MS)
        page.once("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
        await delete.click()
        await expect(page.locator("#video-status")).to_have_text("The video was deleted.", timeout=UI_TIMEOUT_MS)
        assert (await http.get(f"/v1/videos/{video_id}")).status_code == 404
        assert (await _plays_clip(page, url, vod_clip_id, shots, "clip-after-delete.png"))[0] == "mp4"

        # The dashboard sets how long the channel's videos are kept.
        await page.goto(f"{url}/dashboard", wait_until="domcontentloaded")
        form = page.locator(f'article.channel-card[data-channel="{channel}"] form.retention-form')
        await expect(form.locator("input[name=vod_retention_days]")).not_to_have_value("", timeout=UI_TIMEOUT_MS)
        await form.locator("input[name=vod_retention_days]").fill("-3")
        await form.get_by_role("button", name="Save").click()
        await expect(form.locator(".form-status")).to_contain_text("vod_retention_days", timeout=UI_TIMEOUT_MS)
        await form.locator("input[name=vod_retention_days]").fill("7")
        await form.get_by_role("button", name="Save").click()
        await expect(form.locator(".form-status")).to_have_text("Videos are kept for 7 days.", timeout=UI_TIMEOUT_MS)
        assert (await http.get(f"/v1/channels/{channel}")).json()["vod_retention_days"] == 7
    assert not errors, errors
    print(f"\nchat shown {gaps_ms} ms from its moment; clips {report}; screenshots in {shots}")
