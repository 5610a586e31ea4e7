"""The web app in a real browser against the whole platform: a creator signs up on the dashboard,
creates a channel and reads the stream key there, publishes with the ffmpeg CLI, and a viewer
watches the channel page (video advancing, the quality menu offering the ladder, heartbeats
answered), finds the stream in the directory and in search.  Time to first frame is printed and
written next to the screenshots."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Browser, Dialog, Locator, Page, WebSocketRoute, expect
from playwright.async_api import TimeoutError as PlaywrightTimeout

from bench.browser import (
    chromium,
    first_frame_of,
    mse_supports,
    new_page,
    open_channel,
    quality_levels,
    resource_timeline,
    screenshot_dir,
    video_time,
    wait_first_frame,
    wait_video_advances,
)
from infra.launcher import GlasscastUp
from media.testpattern import ffmpeg_push
from tests.waiting import eventually_async

pytestmark = [pytest.mark.browser, pytest.mark.integration]

PASSWORD = "correct horse battery"
CSP_SCRIPT_SELF = re.compile(r"(^|;)\s*script-src 'self'\s*(;|$)")
INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>")
EVENT_ATTRIBUTE = re.compile(r"<[^>]+\son[a-z]+=", re.IGNORECASE)


async def _sign_up_and_create_channel(page: Page, url: str, username: str, channel: str) -> tuple[str, str]:
    """Through the dashboard only: (RTMP server URL, stream key) as the page shows them."""
    await page.goto(f"{url}/dashboard")
    signup = page.locator("#signup-form")
    await signup.locator("input[name=username]").fill(username)
    await signup.locator("input[name=password]").fill(PASSWORD)
    await signup.get_by_role("button", name="Sign up").click()
    await expect(page.locator("#studio")).to_be_visible(timeout=30_000)
    await expect(page.locator("#whoami")).to_have_text(username)

    form = page.locator("#create-channel")
    await form.locator("input[name=name]").fill("x")  # too short: the API's problem detail is shown
    await form.get_by_role("button", name="Create channel").click()
    await expect(form.locator(".form-status")).to_contain_text("4-25 letters")

    await form.locator("input[name=name]").fill(channel)
    await form.locator("input[name=title]").fill("Browser test <b>not bold</b>")
    await form.locator("input[name=category]").fill("Science & Technology")
    await form.locator("input[name=tags]").fill("e2e, browser")
    await form.get_by_role("button", name="Create channel").click()
    card = page.locator(f'.channel-card[data-channel="{channel}"]')
    await expect(card).to_be_visible(timeout=30_000)
    key = card.locator(".stream-key")
    if await key.get_attribute("data-masked") == "true":
        await card.get_by_role("button", name="Show").click()
    await expect(key).to_have_attribute("data-masked", "false")
    server = (await card.locator(".server-url").text_content() or "").strip()
    stream_key = (await key.text_content() or "").strip()
    assert server.startswith("rtmp://") and stream_key, (server, stream_key)
    await page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=url)
    for button, copied in (("copy-server", server), ("copy-key", stream_key)):
        await card.locator(f"button.{button}").click()
        await expect(card.locator(".key-status")).to_contain_text("copied")
        assert await page.evaluate("() => navigator.clipboard.readText()") == copied

    await card.get_by_role("button", name="Hide").click()
    await expect(key).to_have_attribute("data-masked", "true")
    assert stream_key not in (await key.text_content() or "")

    # After a reload the creator is still signed in, the channel is listed, and its key is masked
    # until shown (fetched from the API again).
    await page.reload()
    await expect(card).to_be_visible(timeout=30_000)
    await expect(key).to_have_attribute("data-masked", "true")
    assert stream_key not in (await key.text_content() or "")
    await card.get_by_role("button", name="Show").click()
    await expect(key).to_have_text(stream_key)
    return server, stream_key


async def _master_variants(http: httpx.AsyncClient, url: str, channel: str) -> int:
    """How many variants the live stream's master playlist lists (0 before it is live)."""
    found = (await http.get(f"{url}/v1/channels/{channel}")).json()
    stream_id = found.get("live_stream_id")
    if not stream_id:
        return 0
    playback = (await http.get(f"{url}/v1/streams/{stream_id}/playback")).json()
    master = await http.get(playback["hls"]["master"])
    return master.text.count("#EXT-X-STREAM-INF") if master.status_code == 200 else 0


def test_pages_answer_with_caching_csp_and_problems(live_platform: GlasscastUp) -> None:
    with httpx.Client(base_url=live_platform.url, timeout=10) as http:
        for path in ("/", "/c/somebody", "/dashboard"):
            r = http.get(path)
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/html"), path
            assert r.headers["cache-control"] == "no-cache"
            assert CSP_SCRIPT_SELF.search(r.headers["content-security-policy"])
            assert not INLINE_SCRIPT.search(r.text) and not EVENT_ATTRIBUTE.search(r.text), path
            assert not re.search(r'(src|href)="(https?:)?//', r.text), "nothing is loaded from another origin"
            again = http.get(path, headers={"If-None-Match": r.headers["etag"]})
            assert again.status_code == 304
        channel_page = http.get("/c/somebody").text
        vendor = re.search(r'href="(/static/vendor/hls\.min\.js\?v=[0-9.]+)"', channel_page)
        assert vendor, "the channel page loads the installed hls.js by version"
        r = http.get(vendor.group(1))
        assert r.status_code == 200 and "immutable" in r.headers["cache-control"]
        r = http.get("/static/js/channel.js")
        assert r.status_code == 200 and r.headers["cache-control"] == "no-cache"
        assert "javascript" in r.headers["content-type"]
        for path, detail in (("/c/no", "4-25 letters"), ("/static/vendor/evil.js", "does not exist"),
                             ("/static/js/..%2F..%2F..%2Fweb.py", "does not exist"),
                             ("/static/nothing.css", "does not exist")):
            r = http.get(path)
            assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json", path
            assert detail in r.json()["detail"], (path, r.text)


async def test_creator_goes_live_and_viewer_watches(live_platform: GlasscastUp, tmp_path: Path) -> None:
    url = live_platform.url
    tag = uuid.uuid4().hex[:8]
    username, channel = f"creator_{tag}", f"chan_{tag}"
    shots = screenshot_dir()
    errors: list[str] = []
    async with chromium() as browser, httpx.AsyncClient(timeout=10) as http:
        probe = await new_page(browser)
        await probe.goto(f"{url}/healthz")
        assert await mse_supports(probe), "Chromium cannot play H.264 + AAC through MSE"

        creator = await new_page(browser, errors)
        server, stream_key = await _sign_up_and_create_channel(creator, url, username, channel)
        assert server.endswith(f":{live_platform.rtmp_port}/live"), server

        # Publish with the server and key the dashboard showed: 720p30, 2 s GOPs, in real time.  The ingest
        # listens on 127.0.0.1, where "localhost" may resolve to ::1 first.
        push = ffmpeg_push(server.replace("://localhost:", "://127.0.0.1:"), stream_key, 90, size="1280x720",
                           fps=30, gop_s=2.0, log=tmp_path / "ffmpeg.log")
        try:
            card = creator.locator(f'.channel-card[data-channel="{channel}"]')
            await expect(card.locator(".card-head .badge.live")).to_be_visible(timeout=60_000)
            await expect(card.locator('.metric[data-metric="Resolution"] dd')).to_have_text("1280×720",
                                                                                           timeout=30_000)
            # Players read the master playlist once: join when the ladder is in it.
            await eventually_async(lambda: _ladder_ready(http, url, channel), 60, "the ladder in the master playlist",
                                   every_s=0.5)

            viewer = await new_page(browser, errors)
            beats: list[int] = []
            viewer.on("response", lambda r: beats.append(r.status) if r.url.endswith("/heartbeat") else None)
            await open_channel(viewer, url, channel)
            timings = await wait_first_frame(viewer, timeout_s=60)
            first_frame = first_frame_of(timings)
            timeline = await resource_timeline(viewer)
            start, end = await wait_video_advances(viewer, 2.0)
            assert end >= start + 2.0
            levels = await quality_levels(viewer)
            assert len(levels) > 1, levels
            await expect(viewer.locator("#stream-title")).to_have_text("Browser test <b>not bold</b>")
            await expect(viewer.locator("#stream-category")).to_have_text("Science & Technology")
            await expect(viewer.locator("#live-badge")).to_be_visible()
            await expect(viewer.locator("#latency")).to_have_text(re.compile(r"Latency \d+\.\d s"), timeout=10_000)
            await expect(viewer.locator("#chat-state")).to_have_text(re.compile("connected|unavailable"),
                                                                    timeout=15_000)
            await eventually_async(lambda: 204 in beats, 15, "a heartbeat answered 204", every_s=0.5)

            # Paused, the player falls behind; "catch up" jumps back to the live sync point.
            await viewer.evaluate("() => document.querySelector('video').pause()")
            paused_at = await video_time(viewer)
            await expect(viewer.locator("#catch-up")).to_be_enabled(timeout=10_000)
            await asyncio.sleep(2.5)
            await viewer.locator("#catch-up").click()
            await viewer.wait_for_function("t => document.querySelector('video').currentTime > t + 2", arg=paused_at)

            # Pick the lowest level by hand; playback carries on.
            await viewer.select_option("#quality", label=levels[-1])
            await wait_video_advances(viewer, 1.0)
            await viewer.select_option("#quality", value="-1")
            await viewer.screenshot(path=str(shots / "channel.png"))

            directory = await new_page(browser, errors)

            async def listed() -> bool:
                await directory.goto(url)
                try:
                    await directory.locator(f'.card[data-channel="{channel}"]').wait_for(timeout=3000)
                    return True
                except PlaywrightTimeout:
                    return False

            await eventually_async(listed, 45, "the live card in the directory", every_s=0.5)
            live_card = directory.locator(f'.card[data-channel="{channel}"]')
            await expect(live_card.locator(".card-title")).to_have_text("Browser test <b>not bold</b>")
            await expect(live_card.locator(".card-category")).to_have_text("Science & Technology")
            await expect(live_card.locator(".badge.viewers")).to_contain_text("viewer")
            await expect(directory.locator("#categories .chip", has_text="Science & Technology")).to_be_visible()
            await directory.locator("#categories .chip", has_text="Science & Technology").click()
            await expect(live_card).to_be_visible()
            await directory.screenshot(path=str(shots / "directory.png"))
            await directory.fill("#search-q", channel)
            await directory.press("#search-q", "Enter")
            await expect(directory.locator("#search-list .result-channel", has_text=channel)).to_be_visible(
                timeout=15_000)

            await _chat_renders_text_only(browser, url, channel, errors)
            await _missing_player_is_explained(browser, url, channel)
            await creator.screenshot(path=str(shots / "dashboard.png"), full_page=True)
            await _creator_edits_rotates_and_ends(creator, card, stream_key, http, url, channel)
        finally:
            push.kill()
            push.wait()

    assert not errors, errors
    result = {"first_frame_ms": round(first_frame, 1), "timings_ms": {k: round(v, 1) for k, v in timings.items()},
              "levels": levels, "screenshots": str(shots), "timeline": timeline}
    (shots / "first-frame.json").write_text(json.dumps(result, indent=2))
    print(f"\ntime to first frame: {first_frame:.0f} ms (navigation start to first presented frame); "
          f"timings {result['timings_ms']}; levels {levels}; screenshots in {shots}")


async def _chat_renders_text_only(browser: Browser, url: str, channel: str, errors: list[str]) -> None:
    """Chat frames whose user name and text are markup show as text and run nothing.

    The page's socket is answered in the browser (Playwright's WebSocket routing) with frames in the
    chat protocol's shape, so this holds whether or not a chat server is deployed.
    """
    hostile_name, hostile_text = "<img src=x onerror=alert(1)>", "<script>alert(2)</script> hi"
    frame = "\n".join(json.dumps(f) for f in (
        {"type": "CONNECTED", "room": {}, "recent": []},
        {"type": "MESSAGE", "id": "m1", "user": {"id": "u1", "username": hostile_name}, "text": hostile_text}))
    page = await new_page(browser, errors)
    dialogs: list[str] = []

    async def dismiss(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        await dialog.dismiss()

    page.on("dialog", dismiss)
    await page.route_web_socket(re.compile(r"/v1/chat/ws"), lambda ws: _send(ws, frame))
    await open_channel(page, url, channel)
    await expect(page.locator("#chat-state")).to_have_text("connected", timeout=30_000)
    line = page.locator("#chat-messages .chat-line")
    await expect(line.locator(".chat-name")).to_have_text(hostile_name)
    await expect(line.locator(".chat-text")).to_have_text(hostile_text)
    assert await page.locator("#chat-messages img, #chat-messages script").count() == 0
    assert not dialogs, dialogs
    await page.close()


async def _creator_edits_rotates_and_ends(page: Page, card: Locator, old_key: str, http: httpx.AsyncClient,
                                         url: str, channel: str) -> None:
    """Edit the live stream's title, reset the stream key, end the stream: all from the dashboard."""
    form = card.locator(".stream-controls form")
    await form.locator("input[name=title]").fill("Renamed while live")
    await form.get_by_role("button", name="Update stream").click()
    await expect(form.locator(".form-status")).to_have_text("Saved.")
    stream_id = (await http.get(f"{url}/v1/channels/{channel}")).json()["live_stream_id"]
    assert (await http.get(f"{url}/v1/streams/{stream_id}")).json()["title"] == "Renamed while live"

    page.once("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
    await card.get_by_role("button", name="Reset key").click()
    await expect(card.locator(".key-status")).to_contain_text("New stream key")
    new_key = (await card.locator(".stream-key").text_content() or "").strip()
    assert new_key.startswith("live_") and new_key != old_key

    page.once("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
    await card.get_by_role("button", name="End stream").click()
    await expect(card.locator(".stream-controls h3")).to_have_text("Next stream", timeout=15_000)


async def _missing_player_is_explained(browser: Browser, url: str, channel: str) -> None:
    """Without hls.js (npm ci never ran) the channel page says what is missing instead of a black box."""
    page = await new_page(browser)
    await page.route(re.compile(r"/static/vendor/hls\.min\.js"), lambda route: route.fulfill(status=404))
    await open_channel(page, url, channel)
    await expect(page.locator("#player-message")).to_contain_text("hls.js) is not installed", timeout=30_000)
    await page.close()


def _send(ws: WebSocketRoute, frame: str) -> None:
    ws.send(frame)


async def _ladder_ready(http: httpx.AsyncClient, url: str, channel: str) -> bool:
    return await _master_variants(http, url, channel) >= 3  # source, 480p30, 360p30 (+ audio)
