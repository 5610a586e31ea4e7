"""Profiles, password changes, and erasing a deleted account's personal data from an append-only log.

On ``glasscast up``: two accounts sign up with e-mail addresses and set display
names and bios (``PATCH /v1/me``); the public profile shows them.  One changes
its password: its older token and old password stop working.  Already
then no topic carries them in clear (they are sealed with each user's key).
One account is deleted (``DELETE /v1/me``, its password required): its
profile is gone, its token stops working, and after ``glasscast
rebuild-views`` (a replay of the log) it is still deleted while the other
account's profile still opens.  The ``users`` topic kept every record (one
more: the deletion), nothing was rewritten.  Finally the platform stops (the
archive drained, Valkey's AOF flushed) and every file of the data directory
(archive, AOF, logs, stores) and every topic is searched for the deleted
user's e-mail, display name and bio, and for their key: none holds a byte of
them, and the sealed e-mail the archive keeps no longer opens (the other
user's still does).
"""

from __future__ import annotations

import io
import json
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path

import av
import httpx
import pytest

from gateways.profiles import PROFILE_READS_PER_MINUTE
from infra.launcher import GlasscastUp
from tests.waiting import eventually
from views.personal_data import PersonalKeys, open_field

pytestmark = pytest.mark.integration

PLATFORM_ENV = {"GLASSCAST_CHAT_ML_FILTER": "false", "GLASSCAST_LADDER_MODE": "passthrough",
                "GLASSCAST_TRANSCODE_WORKERS": "1"}


def _sign_up(http: httpx.Client, name: str, email: str, password: str) -> tuple[str, dict[str, str]]:
    r = http.post("/v1/users", json={"username": name, "password": password, "email": email})
    assert r.status_code == 201, r.text
    r = http.post("/v1/auth/login", json={"username": name, "password": password})
    assert r.status_code == 200, r.text
    return str(r.json()["user"]["id"]), {"Authorization": f"Bearer {r.json()['access_token']}"}


def _users_topic(up: GlasscastUp) -> list[dict[str, object]]:
    lines = up.cli("tail", "users", "--from-beginning", "--json", "--exit-at-end").splitlines()
    return [json.loads(line) for line in lines]


def _topics(up: GlasscastUp) -> dict[str, str]:
    names = [line.split()[0] for line in up.cli("topics", "list").splitlines()[1:] if line.strip()]
    return {name: up.cli("tail", name, "--from-beginning", "--json", "--exit-at-end")
            for name in names if not name.startswith("_")}


def _files(data_dir: Path) -> Iterator[Path]:
    for path in sorted(data_dir.rglob("*")):
        if path.is_file() and not path.is_symlink():
            yield path


def test_a_deleted_account_leaves_no_readable_personal_data(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    tag = secrets.token_hex(4)
    gone = {"email": f"erase-me-{tag}@example.org", "display_name": f"Erasable Person {tag}",
            "bio": f"a bio to forget {tag}"}
    kept = {"email": f"keep-me-{tag}@example.org", "display_name": f"Staying Person {tag}",
            "bio": f"a bio to keep {tag}"}
    with GlasscastUp(data_dir, settings=PLATFORM_ENV) as up, httpx.Client(base_url=up.url, timeout=30) as http:
        gone_id, gone_auth = _sign_up(http, f"gone_{tag}", gone["email"], "gone-password-1")
        kept_id, kept_auth = _sign_up(http, f"kept_{tag}", kept["email"], "kept-password-1")
        for auth, fields in ((gone_auth, gone), (kept_auth, kept)):
            r = http.patch("/v1/me", headers=auth, json={"display_name": fields["display_name"],
                                                          "bio": fields["bio"]})
            assert r.status_code == 200, r.text
            assert r.json()["display_name"] == fields["display_name"] and r.json()["bio"] == fields["bio"]
        # An avatar: re-encoded to a 256x256 JPEG and served from the profile's URL; anything else is refused.
        png = subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=640x360", "-frames:v", "1",
                              "-f", "image2pipe", "-vcodec", "png", "-"], capture_output=True, check=True).stdout
        r = http.put("/v1/me/avatar", headers={**gone_auth, "Content-Type": "image/png"}, content=png)
        assert r.status_code == 200, r.text
        avatar_url = r.json()["avatar_url"]
        avatar = http.get(avatar_url)
        assert avatar.status_code == 200 and avatar.headers["content-type"] == "image/jpeg"
        with av.open(io.BytesIO(avatar.content)) as picture:
            frame = next(picture.decode(video=0))
            assert (frame.width, frame.height) == (256, 256)
        for bad, status in ((b"#EXTM3U\n#EXT-X-ENDLIST\n", 422), (b"\x89PNG\r\n\x1a\n" + b"\0" * 64, 422),
                            (b"", 422), (b"\xff\xd8\xff" + b"x" * (3 << 20), 413)):
            r = http.put("/v1/me/avatar", headers=gone_auth, content=bad)
            assert r.status_code == status, (bad[:12], r.text)
        profile = http.get(f"/v1/users/gone_{tag}").json()
        assert profile["avatar_url"] == avatar_url
        assert (profile["id"], profile["display_name"], profile["bio"]) == (gone_id, gone["display_name"],
                                                                           gone["bio"])
        assert http.get(f"/v1/users/{kept_id}").json()["display_name"] == kept["display_name"]
        # Bad input: a bidi override in a display name, nothing to change, an unknown user.
        assert http.patch("/v1/me", headers=kept_auth, json={"display_name": "evil\u202e"}).status_code == 422
        assert http.patch("/v1/me", headers=kept_auth, json={}).status_code == 400
        assert http.get("/v1/users/nobody_here").status_code == 404
        # A password change: the old password and every older token stop working, the new ones work.
        r = http.post("/v1/me/password", headers=kept_auth,
                      json={"old_password": "wrong-password-9", "new_password": "kept-password-2"})
        assert r.status_code == 401, r.text
        r = http.post("/v1/me/password", headers=kept_auth, json={"old_password": "kept-password-1",
                                                                   "new_password": "short"})
        assert r.status_code == 422 and r.json()["field"] == "new_password", r.text
        r = http.post("/v1/me/password", headers=kept_auth, json={"old_password": "kept-password-1",
                                                                   "new_password": "kept-password-2"})
        assert r.status_code == 200, r.text
        assert http.get("/v1/me", headers=kept_auth).status_code == 401
        kept_auth = {"Authorization": f"Bearer {r.json()['access_token']}"}
        assert http.get("/v1/me", headers=kept_auth).status_code == 200
        assert http.post("/v1/auth/login", json={"username": f"kept_{tag}",
                                                 "password": "kept-password-1"}).status_code == 401
        r = http.post("/v1/auth/login", json={"username": f"kept_{tag}", "password": "kept-password-2"})
        assert r.status_code == 200 and http.get("/v1/me", headers={
            "Authorization": f"Bearer {r.json()['access_token']}"}).status_code == 200

        before = _users_topic(up)
        records = json.dumps(before)
        assert not [v for v in (*gone.values(), *kept.values()) if v in records], "sealed before any deletion"
        sealed = {(str(e["value"]["user_id"]), str(e["value"]["email"])) for e in before
                  if e["type"] == "UserRegistered" and e["value"]["email"]}
        gone_key = PersonalKeys.open(data_dir).get(gone_id)
        assert gone_key is not None and open_field(gone_key, gone_id, "email", dict(sealed)[gone_id]) == gone["email"]

        assert http.request("DELETE", "/v1/me", headers=gone_auth,
                            json={"password": "not-the-password"}).status_code == 401
        assert http.get(f"/v1/users/{gone_id}").status_code == 200  # a wrong password deletes nothing
        r = http.request("DELETE", "/v1/me", headers=gone_auth, json={"password": "gone-password-1"})
        assert r.status_code == 204, r.text
        assert http.get(f"/v1/users/gone_{tag}").status_code == 404
        assert http.get(f"/v1/users/{gone_id}").status_code == 404
        assert http.get("/v1/me", headers=gone_auth).status_code == 401  # the account's tokens stop working
        assert http.get(avatar_url).status_code == 404  # the avatars went with it
        assert http.post("/v1/auth/login", json={"username": f"gone_{tag}",
                                                 "password": "gone-password-1"}).status_code == 401

        after = _users_topic(up)
        # Appended to, never rewritten: every earlier record at its offset, unchanged, and one more.
        at = {(e["partition"], e["offset"]): e for e in after}
        assert all(at.get((e["partition"], e["offset"])) == e for e in before) and len(after) == len(before) + 1
        assert [e["type"] for e in after if e not in before] == ["UserDeleted"]

        up.cli("rebuild-views")  # a replay of the whole log: still deleted, the other account intact

        def replayed() -> bool:
            return http.get(f"/v1/users/{kept_id}").status_code == 200
        eventually(replayed, 60, "the kept profile after the replay", every_s=0.2)
        assert http.get(f"/v1/users/{gone_id}").status_code == 404
        kept_profile = http.get(f"/v1/users/kept_{tag}").json()
        assert (kept_profile["display_name"], kept_profile["bio"]) == (kept["display_name"], kept["bio"])
        # Public reads are bounded per client: at most PROFILE_READS_PER_MINUTE a minute, then 429.
        # (Up to 100 reads above fell in the same minute.)
        codes = [http.get(f"/v1/users/{kept_id}").status_code for _ in range(PROFILE_READS_PER_MINUTE)]
        served = codes.index(429)
        assert served >= PROFILE_READS_PER_MINUTE - 100
        assert set(codes[:served]) == {200} and set(codes[served:]) == {429}
        refused = http.get(f"/v1/users/{kept_id}")
        assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1
        topics = _topics(up)

    assert any((data_dir / "archive").rglob("*.avro")), "the archive holds the topics' records"
    assert any((data_dir / "valkey").rglob("*.aof")), "Valkey's append-only file"
    # The key is gone, from the store's file too (secure_delete): what the archive holds no longer opens.
    keys = PersonalKeys.open(data_dir)
    assert keys.get(gone_id) is None
    assert open_field(keys.get(kept_id), kept_id, "email", dict(sealed)[kept_id]) == kept["email"]
    found = [f"{label} in {path}" for path in _files(data_dir) for label, value in gone.items()
             if value.encode() in path.read_bytes()]
    found += [f"the deleted user's key in {path}" for path in _files(data_dir) if gone_key in path.read_bytes()]
    found += [f"{label} in topic {topic}" for topic, text in topics.items() for label, value in gone.items()
              if value in text]
    assert not found, "\n".join(found)
