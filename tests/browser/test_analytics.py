"""Creator analytics and the "Recommended for you" row in a real browser, against the whole platform.

A streamer publishes with the ffmpeg CLI; a signed-in viewer watches the channel page (whose player
sends heartbeats) and the streamer says three things in chat.  Meanwhile the viewer's directory shows
the live channel in its "Recommended for you" row (they do not follow it), which an anonymous visitor
does not get.  Once the broadcast ends and the analytics sink has loaded it, the owner opens the
analytics page for that stream: the viewer and chat charts are drawn with the data (checked in the
uPlot instances' own points, not just a canvas), the figures say three chat messages from one
chatter, and the CSV export downloads the same minutes.  Heartbeats come every 2 s here (the
default is 10 s) so a short stream has enough of them.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import Page, expect

from bench.browser import chromium, new_page, screenshot_dir
from infra.launcher import GlasscastUp
from media.testpattern import ffmpeg_push
from tests.integration.chat_client import Client
from tests.waiting import eventually_async

pytestmark = [pytest.mark.browser, pytest.mark.integration]

PASSWORD = "correct horse battery"
STREAM_S = 60            # what ffmpeg publishes at most (real time); the broadcast is ended before
WATCH_S = 30             # how long the viewer watches before the broadcast ends
CHAT_AT_S = (5.0, 10.0, 15.0)
LIVE_TIMEOUT_S = 60
LOADED_TIMEOUT_S = 90    # the sink's batches are half a second; the rest is the platform under load
UI_TIMEOUT_MS = 30_000


@pytest.fixture(scope="module")
def analytics_platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GlasscastUp]:
    data = tmp_path_factory.mktemp("analytics-platform") / "data"
    with GlasscastUp(data, {"GLASSCAST_VIEWERS_HEARTBEAT_INTERVAL_S": "2"}) as up:
        yield up


async def _account(http: httpx.AsyncClient, username: str) -> dict[str, Any]:
    r = await http.post("/v1/users", json={"username": username, "password": PASSWORD})
    assert r.status_code == 201, r.text

    async def login() -> dict[str, Any] | None:
        r = await http.post("/v1/auth/login", json={"username": username, "password": PASSWORD})
        return r.json() if r.status_code == 200 else None

    answer: dict[str, Any] = await eventually_async(login, 30, f"{username} to sign in")
    return answer


async def _signed_in(page: Page, url: str, login: dict[str, Any]) -> None:
    """What the dashboard keeps after a login (gateways/web/static/js/session.js), put there directly."""
    session = {"token": login["access_token"], "user": login["user"],
               "expiresAtMs": int(time.time() * 1000) + int(login["expires_in"]) * 1000}
    await page.goto(f"{url}/healthz")
    await page.evaluate("s => localStorage.setItem('glasscast.session', s)", json.dumps(session))


def test_the_analytics_page_loads_the_pinned_chart_library(analytics_platform: GlasscastUp) -> None:
    pinned = json.loads((Path(__file__).resolve().parents[2] / "gateways/web/package.json").read_text())
    version = pinned["dependencies"]["uplot"]
    with httpx.Client(base_url=analytics_platform.url, timeout=10) as http:
        page = http.get("/dashboard/analytics")
        assert page.status_code == 200 and "script-src 'self'" in page.headers["content-security-policy"]
        for name, media in (("uPlot.iife.min.js", "text/javascript"), ("uPlot.min.css", "text/css")):
            path = f"/static/vendor/{name}?v={version}"
            assert path in page.text, name
            r = http.get(path)
            assert r.status_code == 200 and r.headers["content-type"].startswith(media), (name, r.headers)
            assert r.headers["cache-control"] == "public, max-age=31536000, immutable"


async def test_owner_sees_viewer_and_chat_charts_after_a_short_stream(analytics_platform: GlasscastUp,
                                                                       tmp_path: Path) -> None:
    up, url = analytics_platform, analytics_platform.url
    tag = uuid.uuid4().hex[:8]
    channel = f"stats_{tag}"
    shots = screenshot_dir()
    errors: list[str] = []
    async with chromium() as browser, httpx.AsyncClient(base_url=url, timeout=30) as http:
        owner = await _account(http, f"owner_{tag}")
        viewer = await _account(http, f"viewer_{tag}")
        auth = {"Authorization": f"Bearer {owner['access_token']}"}
        r = await http.post("/v1/channels", headers=auth, json={"name": channel, "title": "Numbers",
                                                                "category": "Science"})
        assert r.status_code == 201, r.text
        channel_id, stream_key = r.json()["id"], r.json()["stream_key"]

        push = ffmpeg_push(up.rtmp_url, stream_key, STREAM_S, log=tmp_path / "ffmpeg.log")
        try:
            async def live() -> str:
                return str((await http.get(f"/v1/channels/{channel}")).json().get("live_stream_id") or "")
            stream_id: str = await eventually_async(live, LIVE_TIMEOUT_S, f"{channel} live", every_s=0.2)

            # The viewer watches the channel page; its player sends the heartbeats.
            watcher = await new_page(browser, errors)
            await _signed_in(watcher, url, viewer)
            await watcher.goto(f"{url}/c/{channel}", wait_until="domcontentloaded")
            await watcher.wait_for_function(
                "() => { const v = document.getElementById('video'); return v.currentTime > 1 && !v.paused; }",
                timeout=60_000)
            watching_at = time.monotonic()

            chat = await Client.open(url.replace("http", "ws", 1) + f"/v1/chat/ws?channel={channel_id}",
                                     owner["access_token"])
            try:
                for i, at_s in enumerate(CHAT_AT_S):
                    await asyncio.sleep(max(0.0, watching_at + at_s - time.monotonic()))
                    ack = await chat.say(f"stat line {i + 1}")
                    assert ack["type"] == "ACK", ack
            finally:
                await chat.ws.close()

            # The directory recommends the live channel to the signed-in viewer (not followed), not to a visitor.
            directory = await new_page(browser, errors)
            await _signed_in(directory, url, viewer)
            await directory.goto(url, wait_until="domcontentloaded")
            row = directory.locator("#recommended")
            await expect(row).to_be_visible(timeout=UI_TIMEOUT_MS)
            await expect(row.locator(f'a.card[data-channel="{channel}"]')).to_be_visible()
            await directory.screenshot(path=str(shots / "directory-recommended.png"))
            visitor = await new_page(browser, errors)
            await visitor.goto(url, wait_until="domcontentloaded")
            await expect(visitor.locator("#streams a.card").first).to_be_visible(timeout=UI_TIMEOUT_MS)
            assert await visitor.locator("#recommended").is_hidden()

            await asyncio.sleep(max(0.0, watching_at + WATCH_S - time.monotonic()))
            r = await http.post(f"/v1/streams/{stream_id}/end", headers=auth)
            assert r.status_code in (200, 202, 204), r.text
            await watcher.close()
        finally:
            push.kill()
            push.wait()

        # The API has the stream once the sink loaded it.
        async def loaded() -> dict[str, Any] | None:
            r = await http.get(f"/v1/streams/{stream_id}/analytics", headers=auth)
            if r.status_code != 200:
                return None
            body: dict[str, Any] = r.json()
            viewers = sum(p["viewers"] for p in body["viewers_per_minute"])
            return body if viewers > 0 and body["chat_messages"] == len(CHAT_AT_S) else None
        report: dict[str, Any] = await eventually_async(loaded, LOADED_TIMEOUT_S, "the stream's analytics",
                                                        every_s=1.0)
        assert report["peak_viewers"] == 1 and report["unique_viewers"] == 1 and report["chatters"] == 1

        # The owner's analytics page draws it.
        page = await new_page(browser, errors)
        await _signed_in(page, url, owner)

        # The last heartbeats may still be loading (into the next minute): the page is drawn again until
        # it shows what the API answers right after.
        async def drawn() -> tuple[dict[str, Any], Any, Any] | None:
            await page.goto(f"{url}/dashboard/analytics?channel={channel_id}&stream={stream_id}",
                            wait_until="domcontentloaded")
            await page.wait_for_function("() => document.getElementById('analytics').dataset.loaded",
                                         timeout=60_000)
            viewers = await page.evaluate("() => document.getElementById('chart-viewers').uplot.data")
            chat_points = await page.evaluate("() => document.getElementById('chart-chat').uplot.data")
            now = (await http.get(f"/v1/streams/{stream_id}/analytics", headers=auth)).json()
            minutes = [p["t"] / 1000 for p in now["viewers_per_minute"]]
            same = viewers[0] == minutes and viewers[1] == [p["viewers"] for p in now["viewers_per_minute"]]
            return (now, viewers, chat_points) if same else None
        report, viewers, chat_points = await eventually_async(drawn, 60, "the page drawing the API's minutes",
                                                              every_s=2.0)
        minutes = [p["t"] / 1000 for p in report["viewers_per_minute"]]
        assert max(viewers[1]) == 1
        assert sum(chat_points[1]) == len(CHAT_AT_S) and len(chat_points[0]) >= 1
        assert await page.locator("#chart-viewers").get_attribute("data-points") == str(len(minutes))
        assert await page.locator("#chart-viewers canvas").count() == 1
        assert await page.locator("#chart-chat canvas").count() == 1
        assert await page.locator("#data-chat tbody tr").count() == len(chat_points[0])
        await expect(page.locator('[data-figure="chat_messages"]')).to_have_text("3")
        await expect(page.locator('[data-figure="chatters"]')).to_have_text("1")
        await expect(page.locator('[data-figure="peak_viewers"]')).to_have_text("1")
        assert await page.locator("#renditions li[data-rendition]").count() >= 1
        await page.screenshot(path=str(shots / "creator-analytics.png"), full_page=True)

        # The CSV export: the same minutes, fetched with the owner's token.
        csv_link = page.locator("#csv-export")
        assert (await csv_link.get_attribute("href") or "").endswith(f"/v1/streams/{stream_id}/analytics?format=csv")
        async with page.expect_download() as waiting:
            await csv_link.click()
        download = await waiting.value
        rows = list(csv.DictReader(io.StringIO(Path(await download.path()).read_text())))
        assert sum(int(r["chat_messages"] or 0) for r in rows) == len(CHAT_AT_S)
        assert max(int(r["viewers"] or 0) for r in rows) == 1  # a minute without a value is an empty cell

        # The channel over the last 24 hours holds the same stream.
        before = await page.evaluate("() => document.getElementById('analytics').dataset.loaded")
        await page.select_option("#stream", "")
        await page.wait_for_function("b => document.getElementById('analytics').dataset.loaded !== b", arg=before,
                                     timeout=60_000)
        assert "range=86400000" in page.url and await page.locator("#range").is_enabled()
        period = await page.evaluate("() => document.getElementById('chart-chat').uplot.data")
        assert sum(period[1]) == len(CHAT_AT_S)
        assert (await csv_link.get_attribute("href") or "").startswith(f"/v1/channels/{channel_id}/analytics?from=")

        # Someone else's analytics are refused.
        other = {"Authorization": f"Bearer {viewer['access_token']}"}
        assert (await http.get(f"/v1/streams/{stream_id}/analytics", headers=other)).status_code == 403
    assert errors == []
