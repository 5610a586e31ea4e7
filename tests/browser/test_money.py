"""Raids, subscriptions and cheers in a real browser against the whole platform (`glasscast up`, the sandbox
payment provider).

A raider starts a raid from the dashboard's raid panel, sees the countdown and chooses Raid Now; a viewer on
the raiding channel's page sees the raid announced and the page moves to the live target's page, whose chat
announces the raid.  There the viewer subscribes with the Subscribe button (the sandbox completes at once),
sees the announcement in the room and the subscriber badge on their next chat message, then buys bits through
the API and cheers with the chat panel's picker.  Last, the raider's offline channel hosts the target and its
page plays the hosted stream under the "hosting" banner.  The target goes live with the ffmpeg CLI; the raiding
channel may be offline (only the target of a raid must be live).
"""

from __future__ import annotations

import json
import re
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
UI_TIMEOUT_MS = 20_000
LIVE_TIMEOUT_S = 60
COUNTDOWN_S = 30  # long enough that the test's Raid Now comes first


@pytest.fixture(scope="module")
def money_platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GlasscastUp]:
    data = tmp_path_factory.mktemp("money-platform") / "data"
    with GlasscastUp(data, {"GLASSCAST_GATEWAY_RAID_COUNTDOWN_S": str(COUNTDOWN_S),
                            "GLASSCAST_PAYMENTS_PROVIDER": "sandbox"}) as up:
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


async def test_raid_moves_the_viewer_then_subscribe_and_cheer(money_platform: GlasscastUp, tmp_path: Path) -> None:
    url = money_platform.url
    tag = uuid.uuid4().hex[:8]
    raider_name, star_name, fan_name = f"raider_{tag}", f"star_{tag}", f"fan_{tag}"
    source, target = f"{raider_name}_ch", f"{star_name}_ch"
    shots = screenshot_dir()
    errors: list[str] = []
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        raider, star, fan = (await _account(http, raider_name), await _account(http, star_name),
                             await _account(http, fan_name))
        r = await http.post("/v1/channels", json={"name": source, "title": "Raiding soon"},
                            headers={"Authorization": f"Bearer {raider['access_token']}"})
        assert r.status_code == 201, r.text
        r = await http.post("/v1/channels", json={"name": target, "title": "Raid me"},
                            headers={"Authorization": f"Bearer {star['access_token']}"})
        assert r.status_code == 201, r.text
        push = ffmpeg_push(money_platform.rtmp_url, r.json()["stream_key"], 120, log=tmp_path / "ffmpeg.log")
        try:
            async def live() -> bool:
                return bool((await http.get(f"/v1/channels/{target}")).json().get("live_stream_id"))

            assert await eventually_async(live, LIVE_TIMEOUT_S, f"{target} live", every_s=0.2)
            async with chromium() as browser:
                viewer = await new_page(browser, errors)
                await _signed_in(viewer, url, fan)
                await viewer.goto(f"{url}/c/{source}", wait_until="domcontentloaded")
                await expect(viewer.locator("#chat-state")).to_have_text("connected", timeout=UI_TIMEOUT_MS)

                studio = await new_page(browser, errors)
                await _signed_in(studio, url, raider)
                await studio.goto(f"{url}/dashboard")
                card = studio.locator(f'.channel-card[data-channel="{source}"]')
                await card.locator("input[name=to_broadcaster_id]").fill(target)
                await card.locator(".raid-button").click()
                await expect(card.locator(".raid-countdown")).to_contain_text(f"Raiding {target} in",
                                                                             timeout=UI_TIMEOUT_MS)
                await expect(viewer.locator("#raid-banner")).to_contain_text(f"about to raid {target}",
                                                                            timeout=UI_TIMEOUT_MS)
                await studio.screenshot(path=str(shots / "raid-countdown.png"))
                await card.locator(".raid-now").click()
                await expect(card.locator(".raid-countdown")).to_contain_text(f"Raided {target}",
                                                                             timeout=UI_TIMEOUT_MS)

                await viewer.wait_for_url(f"{url}/c/{target}", timeout=UI_TIMEOUT_MS)
                await expect(viewer.locator("#chat-state")).to_have_text("connected", timeout=UI_TIMEOUT_MS)
                await viewer.screenshot(path=str(shots / "raid-arrived.png"))

                # Subscribe on the target's page: the sandbox completes at once and says so.
                await viewer.locator("#sub-tier").select_option("1000")
                await viewer.locator("#subscribe-button").click()
                await expect(viewer.locator("#subscribe-status")).to_contain_text("Subscribed (sandbox",
                                                                                 timeout=UI_TIMEOUT_MS)
                await expect(viewer.locator("#chat-messages .announcement.subscription")).to_contain_text(
                    f"{fan_name} subscribed at Tier 1", timeout=UI_TIMEOUT_MS)
                await viewer.locator("#chat-input").fill("glad to be here")
                await viewer.locator("#chat-send").click()
                mine = viewer.locator(f'#chat-messages .chat-line[data-user="{fan_name}"]:not(.pending)').last
                await expect(mine).to_contain_text("glad to be here", timeout=UI_TIMEOUT_MS)
                await expect(mine.locator('.chat-badge[data-badge="subscriber"]')).to_be_visible()

                # Bits through the sandbox, then a cheer from the picker.
                r = await http.post("/v1/bits/purchases", json={"pack": "100"},
                                    headers={"Authorization": f"Bearer {fan['access_token']}"})
                assert r.status_code in (200, 201), r.text

                async def bought() -> bool:
                    r = await http.get("/v1/me/bits", headers={"Authorization": f"Bearer {fan['access_token']}"})
                    return bool(r.json().get("balance") == 100)

                assert await eventually_async(bought, 30, "the bought bits in the balance", every_s=0.2)
                await viewer.reload()
                await expect(viewer.locator("#bits-balance")).to_contain_text("100 bits", timeout=UI_TIMEOUT_MS)
                await expect(viewer.locator("#chat-state")).to_have_text("connected", timeout=UI_TIMEOUT_MS)
                await viewer.locator("#cheer-amount").select_option("100")
                await viewer.locator("#chat-input").fill("take my bits")
                await viewer.locator("#cheer-button").click()
                cheer = viewer.locator("#chat-messages .chat-line", has_text="take my bits").last
                await expect(cheer.locator(".chat-bits")).to_have_text("100 bits", timeout=UI_TIMEOUT_MS)
                await expect(viewer.locator("#bits-balance")).to_have_text(re.compile(r"^0 bits"),
                                                                          timeout=UI_TIMEOUT_MS)
                await viewer.screenshot(path=str(shots / "subscribe-and-cheer.png"))

                # Host mode: the raider's offline channel hosts the live one; its page plays that stream.
                r = await http.post(f"/v1/channels/{source}/host", json={"target_channel_id": target},
                                    headers={"Authorization": f"Bearer {raider['access_token']}"})
                assert r.status_code == 200 and r.json()["hosting"]["channel_name"] == target, r.text
                await viewer.goto(f"{url}/c/{source}", wait_until="domcontentloaded")
                await expect(viewer.locator("#host-banner")).to_have_text(f"{source} is hosting {target}",
                                                                          timeout=UI_TIMEOUT_MS)
                await viewer.wait_for_function("() => document.querySelector('video').currentTime > 0",
                                               timeout=60_000)
                await viewer.screenshot(path=str(shots / "hosting.png"))
        finally:
            push.kill()
            push.wait()
    assert errors == []


async def test_revenue_page_draws_bits_by_day(money_platform: GlasscastUp) -> None:
    """A cheer in the channel shows as today's bar in the owner's revenue section, beside subscriptions by tier."""
    url = money_platform.url
    tag = uuid.uuid4().hex[:8]
    owner_name, fan_name = f"earner_{tag}", f"cheerer_{tag}"
    channel_name = f"{owner_name}_ch"
    errors: list[str] = []
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        owner, fan = await _account(http, owner_name), await _account(http, fan_name)
        r = await http.post("/v1/channels", json={"name": channel_name, "title": "Revenue"},
                            headers={"Authorization": f"Bearer {owner['access_token']}"})
        assert r.status_code == 201, r.text
        channel_id = r.json()["id"]
        fan_auth = {"Authorization": f"Bearer {fan['access_token']}"}
        r = await http.post("/v1/bits/purchases", json={"pack": "500"}, headers=fan_auth)
        assert r.status_code == 201 and r.json()["sandbox"] is True, r.text

        async def bought() -> bool:
            return bool((await http.get("/v1/me/bits", headers=fan_auth)).json().get("balance") == 500)

        assert await eventually_async(bought, 30, "the bought bits in the balance", every_s=0.2)
        chat = await Client.open(url.replace("http://", "ws://") + f"/v1/chat/ws?channel={channel_id}",
                                 fan["access_token"])
        try:
            assert (await chat.say("cheer120 for the page"))["type"] == "ACK"
        finally:
            await chat.ws.close()

        async def spent() -> bool:
            b = (await http.get("/v1/me/bits", headers=fan_auth)).json()
            return bool(b.get("spent") == 120 and b.get("held") == 0)

        assert await eventually_async(spent, 30, "the cheer folded into the ledger", every_s=0.2)
        today = time.strftime("%Y-%m-%d", time.gmtime())
        async with chromium() as browser:
            studio = await new_page(browser, errors)
            await _signed_in(studio, url, owner)
            await studio.goto(f"{url}/dashboard")
            card = studio.locator(f'.channel-card[data-channel="{channel_name}"]')
            await card.locator("details.revenue summary").click()
            chart = card.locator("svg.bits-chart")
            await expect(chart.locator(f'.bits-bar[data-day="{today}"]')).to_have_attribute(
                "data-bits", "120", timeout=UI_TIMEOUT_MS)
            await expect(chart.locator(".bits-bar")).to_have_count(30)
            await expect(card.locator(".bits-by-day h4")).to_have_text("Bits by day (last 30 days: 120)")
            await expect(card.locator(".revenue-row")).to_contain_text("Subscriptions: 0")
            height = await chart.locator(f'.bits-bar[data-day="{today}"]').get_attribute("height")
            assert height is not None and int(height) > 0
            await card.locator("details.revenue").screenshot(path=str(screenshot_dir() / "revenue-bits-by-day.png"))
    assert errors == []
