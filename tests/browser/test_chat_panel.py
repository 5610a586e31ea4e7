"""The channel page's chat panel in real browsers against the whole platform: a broadcaster (logged in
on the dashboard) and a viewer (session in localStorage) chat in an offline channel; emotes are
images cut at the server's positions and markup stays text; a rate-limited message is refused to its
sender only; the broadcaster deletes a message and bans the viewer from the per-message menu, and
everyone's page follows; an anonymous visitor reads only.  A socket that drops before the ACK sends
the message again with the same nonce and the server posts it once."""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from typing import Any

import httpx
import pytest
from playwright.async_api import Page, Route, WebSocketRoute, expect

from bench.browser import chromium, new_page, open_channel, screenshot_dir
from gateways.chat.emotes import GLOBAL_EMOTES, parse_emotes
from infra.launcher import GlasscastUp

pytestmark = [pytest.mark.browser, pytest.mark.integration]

PASSWORD = "correct horse battery"
TIMEOUT_MS = 15_000
SAID = re.compile(r"^hello\s+<b>bold</b>$")  # the text around the emote image, markup as typed
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


async def _account(http: httpx.AsyncClient, username: str) -> dict[str, Any]:
    """Sign up and log in through the API: the login answer ({access_token, expires_in, user})."""
    r = await http.post("/v1/users", json={"username": username, "password": PASSWORD})
    assert r.status_code == 201, r.text
    r = await http.post("/v1/auth/login", json={"username": username, "password": PASSWORD})
    assert r.status_code == 200, r.text
    login: dict[str, Any] = r.json()
    return login


async def _log_in_on_dashboard(page: Page, url: str, username: str) -> None:
    await page.goto(f"{url}/dashboard")
    form = page.locator("#login-form")
    await form.locator("input[name=username]").fill(username)
    await form.locator("input[name=password]").fill(PASSWORD)
    await form.get_by_role("button", name="Log in").click()
    await expect(page.locator("#whoami")).to_have_text(username, timeout=TIMEOUT_MS)


async def _log_in_by_storage(page: Page, url: str, login: dict[str, Any]) -> None:
    """What the dashboard keeps after a login (gateways/web/static/js/session.js), put there directly."""
    session = {"token": login["access_token"], "user": login["user"],
               "expiresAtMs": int(time.time() * 1000) + int(login["expires_in"]) * 1000}
    await page.goto(f"{url}/healthz")
    await page.evaluate("s => localStorage.setItem('glasscast.session', s)", json.dumps(session))


async def _open_chat(page: Page, url: str, channel: str) -> None:
    await open_channel(page, url, channel)
    await expect(page.locator("#chat-state")).to_have_text("connected", timeout=30_000)


async def _moderate_from_menu(page: Page, line: Any, action: str, screenshot: str | None = None) -> None:
    await line.hover()
    await line.locator(".chat-mod-toggle").click()
    await expect(page.locator(".chat-menu")).to_be_visible()
    if screenshot:
        await page.locator("#chat-panel").screenshot(path=str(screenshot_dir() / screenshot))
    await page.locator(f".chat-menu button[data-action={action}]").click()


class Relay:
    """Routes a page's chat socket through the test: on the first connection the server's ACK and
    MESSAGE frames are held back (the message reached the server, its confirmation never reached the
    page); later connections pass everything but the recent messages."""

    def __init__(self) -> None:
        self.routes: list[WebSocketRoute] = []
        self.sent: list[dict[str, Any]] = []

    def __call__(self, ws: WebSocketRoute) -> None:
        first = not self.routes
        self.routes.append(ws)
        server = ws.connect_to_server()

        def to_server(message: str | bytes) -> None:
            if isinstance(message, str):
                self.sent.append(json.loads(message))
            server.send(message)

        def to_page(message: str | bytes) -> None:
            kept = []
            for line in str(message).split("\n"):
                frame = json.loads(line)
                if first and frame.get("type") in ("ACK", "MESSAGE"):
                    continue
                if not first and frame.get("type") == "CONNECTED":
                    frame["recent"] = []
                kept.append(json.dumps(frame))
            if kept:
                ws.send("\n".join(kept))

        ws.on_message(to_server)
        server.on_message(to_page)


async def test_chat_between_broadcaster_and_viewer(live_platform: GlasscastUp) -> None:
    url = live_platform.url
    tag = uuid.uuid4().hex[:8]
    channel = f"talk_{tag}"
    errors: list[str] = []
    async with httpx.AsyncClient(base_url=url, timeout=15) as http:
        for code, emote_id in GLOBAL_EMOTES.items():  # every emote the server parses has its image
            r = await http.get(f"/static/emotes/{emote_id}.svg")
            assert r.status_code == 200 and r.headers["content-type"].startswith("image/svg+xml"), code
            assert "max-age=86400" in r.headers["cache-control"] and r.headers["etag"]
            again = await http.get(f"/static/emotes/{emote_id}.svg", headers={"If-None-Match": r.headers["etag"]})
            assert again.status_code == 304 and "max-age=86400" in again.headers["cache-control"]
        caster = await _account(http, f"caster_{tag}")
        viewer = await _account(http, f"viewer_{tag}")
        r = await http.post("/v1/channels", headers={"Authorization": f"Bearer {caster['access_token']}"},
                            json={"name": channel, "title": "Just chatting"})
        assert r.status_code == 201, r.text
        channel_id = r.json()["id"]
        viewer_name = viewer["user"]["username"]

        async with chromium() as browser:
            host, guest, anon = [await new_page(browser, errors) for _ in range(3)]
            await _log_in_on_dashboard(host, url, caster["user"]["username"])
            await _log_in_by_storage(guest, url, viewer)
            await asyncio.gather(*(_open_chat(page, url, channel) for page in (host, guest, anon)))

            # The channel is offline and chat works; an anonymous visitor reads only.
            await expect(host.locator("#live-badge")).to_be_hidden()
            await expect(anon.locator("#chat-login")).to_contain_text("Log in to chat")
            await expect(anon.locator("#chat-login a")).to_have_attribute("href", "/dashboard")
            await expect(anon.locator("#chat-form")).to_be_hidden()
            await expect(guest.locator("#chat-form")).to_be_visible()
            await expect(host.locator("#chat-panel")).to_have_attribute("data-moderator", "true")
            await expect(guest.locator("#chat-panel")).to_have_attribute("data-moderator", "false")

            # The viewer's message: an emote image at the server's position, markup as literal text.
            await guest.fill("#chat-input", "hello Kappa <b>bold</b>")
            await guest.press("#chat-input", "Enter")
            await expect(guest.locator("#chat-input")).to_have_value("")
            hello = host.locator("#chat-messages .chat-line", has_text="hello")
            await expect(hello.locator(".chat-name")).to_have_text(viewer_name, timeout=TIMEOUT_MS)
            kappa = hello.locator(".chat-text img.emote")
            await expect(kappa).to_have_attribute("alt", "Kappa")
            await expect(kappa).to_have_attribute("src", "/static/emotes/kappa.svg")
            await expect(hello.locator(".chat-text")).to_have_text(SAID)
            assert await host.locator("#chat-messages b").count() == 0
            await host.wait_for_function("img => img.complete && img.naturalWidth > 0",
                                         arg=await kappa.element_handle())
            hello_id = await hello.get_attribute("data-id")
            assert hello_id and UUID.match(hello_id), hello_id
            mine = guest.locator(f'#chat-messages .chat-line[data-id="{hello_id}"]')
            await expect(mine).not_to_have_class(re.compile(r"\bpending\b"))
            await expect(mine.locator("img.emote")).to_have_attribute("alt", "Kappa")
            await expect(anon.locator(f'.chat-line[data-id="{hello_id}"] .chat-text')).to_have_text(SAID)

            # Two quick messages: the second is over the rate limit, said to the viewer only.
            await asyncio.sleep(1.1)  # past the window of the first message
            await guest.fill("#chat-input", "first of two")
            await guest.press("#chat-input", "Enter")
            await guest.fill("#chat-input", "second of two")
            await guest.locator("#chat-send").click()
            await expect(guest.locator("#chat-messages .chat-line.notice")).to_contain_text("too quickly",
                                                                                            timeout=TIMEOUT_MS)
            await expect(guest.locator("#chat-input")).to_have_value("second of two")  # given back to retry
            first = host.locator("#chat-messages .chat-line", has_text="first of two")
            await expect(first).to_be_visible(timeout=TIMEOUT_MS)
            await expect(guest.locator("#chat-messages .chat-line.pending")).to_have_count(0)
            assert await host.locator("#chat-messages .chat-line.notice").count() == 0
            assert await host.locator("#chat-messages", has_text="second of two").count() == 0

            # The broadcaster's message carries the broadcaster badge; room modes show above the input.
            await host.fill("#chat-input", "welcome GG")
            await host.press("#chat-input", "Enter")
            welcome = guest.locator("#chat-messages .chat-line", has_text="welcome")
            await expect(welcome.locator('.chat-badge[data-badge="broadcaster"]')).to_be_visible(timeout=TIMEOUT_MS)
            await expect(welcome.locator("img.emote")).to_have_attribute("alt", "GG")
            r = await http.post(f"/v1/chat/{channel_id}/moderate", json={"action": "set_mode", "slow_mode_s": 30},
                                headers={"Authorization": f"Bearer {caster['access_token']}"})
            assert r.status_code == 200, r.text
            for page in (host, guest, anon):
                await expect(page.locator("#chat-room-state")).to_have_text("Slow mode 30 s", timeout=TIMEOUT_MS)

            # Delete from the menu: gone for the viewers, struck through for the broadcaster.
            await expect(guest.locator(".chat-mod-toggle").first).to_be_hidden()
            await _moderate_from_menu(host, hello, "delete")
            for page in (guest, anon):
                line = page.locator(f'.chat-line[data-id="{hello_id}"]')
                await expect(line).to_have_class(re.compile(r"\bdeleted\b"), timeout=TIMEOUT_MS)
                await expect(line.locator(".chat-text")).to_have_text("")
                await expect(line).to_contain_text("message deleted")
            await expect(hello).to_have_class(re.compile(r"\bdeleted\b"))
            await expect(hello.locator(".chat-text")).to_contain_text("<b>bold</b>")

            # A refused moderation request says why.
            async def refuse(route: Route) -> None:
                await route.fulfill(status=403, content_type="application/problem+json",
                                    body=json.dumps({"detail": "moderators cannot moderate other moderators"}))

            await host.route(re.compile(r"/moderate$"), refuse)
            await _moderate_from_menu(host, first, "timeout")
            await expect(host.locator("#chat-messages .chat-line.error").last).to_have_text(
                f"Could not time out {viewer_name}: moderators cannot moderate other moderators")
            await host.unroute(re.compile(r"/moderate$"))

            # Ban: the viewer is told, everyone sees it, the viewer's messages go, and sending is refused.
            await _moderate_from_menu(host, first, "ban", screenshot="chat.png")
            await expect(guest.locator("#chat-messages")).to_contain_text("You were banned from this chat.",
                                                                          timeout=TIMEOUT_MS)
            await expect(guest.locator("#chat-standing")).to_have_text("You are banned from this chat.")
            for page in (host, anon):
                await expect(page.locator("#chat-messages")).to_contain_text(f"{viewer_name} was banned.",
                                                                             timeout=TIMEOUT_MS)
            await expect(anon.locator("#chat-messages", has_text="first of two")).to_have_count(0)
            await guest.fill("#chat-input", "am I banned?")
            await guest.press("#chat-input", "Enter")
            await expect(guest.locator("#chat-messages .chat-line.notice").last).to_have_text(
                "You are banned from this chat.", timeout=TIMEOUT_MS)
            await expect(guest.locator("#chat-messages .chat-line.pending")).to_have_count(0)
            assert await host.locator("#chat-messages", has_text="am I banned?").count() == 0
            await guest.locator("#chat-panel").screenshot(path=str(screenshot_dir() / "chat-viewer.png"))

            # The socket drops after the server took a message but before its ACK reached the page: the
            # page sends it again with the same nonce once it is back, and the server posts it once.
            relay = Relay()
            flaky = await new_page(browser, errors)
            await _log_in_by_storage(flaky, url, caster)
            await flaky.route_web_socket(re.compile(r"/v1/chat/ws"), relay)
            await _open_chat(flaky, url, channel)
            await flaky.fill("#chat-input", "sent once PogChamp")
            await flaky.press("#chat-input", "Enter")
            posted = host.locator("#chat-messages .chat-line", has_text="sent once")
            await expect(posted).to_be_visible(timeout=TIMEOUT_MS)
            pending = flaky.locator("#chat-messages .chat-line", has_text="sent once")
            await expect(pending).to_have_class(re.compile(r"\bpending\b"))
            await relay.routes[0].close(code=4000, reason="dropped by the test")
            await expect(pending).not_to_have_class(re.compile(r"\bpending\b"), timeout=TIMEOUT_MS)
            await expect(pending).to_have_attribute("data-id", await posted.get_attribute("data-id") or "?")
            sends = [f for f in relay.sent if f.get("type") == "send"]
            assert len(sends) == 2 and sends[0]["nonce"] == sends[1]["nonce"], sends
            await expect(host.locator("#chat-messages .chat-line", has_text="sent once")).to_have_count(1)

    assert not errors, errors


RENDER_EMOTES = """async ([text, emotes]) => {
  const { textWithEmotes } = await import('/static/js/chat_render.js');
  return textWithEmotes(text, emotes).map((n) => n.nodeType === Node.TEXT_NODE ? n.data
    : n.tagName === 'IMG' ? `[${n.alt}|${n.getAttribute('src')}]` : `?${n.tagName}`).join('');
}"""


async def test_emote_positions_are_code_points(live_platform: GlasscastUp) -> None:
    """The page cuts text where the server's parser (Python, code points) says, astral characters
    included; positions that do not fit the text leave it as text."""
    async with chromium() as browser:
        page = await new_page(browser)
        await open_channel(page, live_platform.url, "somebody")
        for text in ("😀 Kappa 𝔸𝔹 <3", "Kappa", "é LUL 👍🏽 GG", "KappaKappa Kappa", "<3<3 <3"):
            expected = "".join(f"[{w}|/static/emotes/{GLOBAL_EMOTES[w]}.svg]" if w in GLOBAL_EMOTES else w
                               for w in re.split(r"(\s+)", text))
            assert await page.evaluate(RENDER_EMOTES, [text, parse_emotes(text)]) == expected, text
        kappa = {"id": "kappa", "code": "Kappa"}
        for emotes in ([{**kappa, "start": 0, "end": 99}], [{**kappa, "start": 1, "end": 5}],
                       [{**kappa, "id": "../../x", "start": 0, "end": 4}], [{**kappa, "start": -1, "end": 3}],
                       [{**kappa, "start": "0", "end": 4}], "Kappa", None):
            assert await page.evaluate(RENDER_EMOTES, ["Kappa!", emotes]) == "Kappa!", emotes
        overlapping = [{**kappa, "start": 0, "end": 4}, {"id": "lul", "code": "a", "start": 4, "end": 4}]
        assert await page.evaluate(RENDER_EMOTES, ["Kappa", overlapping]) == "[Kappa|/static/emotes/kappa.svg]"
