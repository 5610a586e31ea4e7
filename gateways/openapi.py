"""``GET /openapi.json``: an OpenAPI 3.1 description of the whole REST API.

The document is data in this module: shared component schemas, then one
entry per operation.  A test walks the app's routes and fails when a route is
missing here or an operation here has no route, and validates the document
with openapi-spec-validator, so the description cannot drift from the code.
Web pages and static files are not part of the REST API and are left out.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from gateways.services import services

JSON = "application/json"
PROBLEM = "application/problem+json"
M3U8 = "application/vnd.apple.mpegurl"


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def obj(required: list[str] | None = None, **props: Any) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": props}
    if required:
        schema["required"] = required
    return schema


S = {"type": "string"}
I = {"type": "integer"}  # noqa: E741
N = {"type": "number"}
B = {"type": "boolean"}
UUID = {"type": "string", "format": "uuid"}
TAGS = {"type": "array", "items": S, "maxItems": 10}


def nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


COMPONENTS: dict[str, Any] = {
    "Problem": obj(["type", "title", "status", "detail"], type=S, title=S, status=I, detail=S, instance=S,
                   field={**S, "description": "The request field at fault, when one is."}),
    "User": obj(["id", "username"], id=UUID, username=S),
    "Profile": obj(["id", "username", "display_name", "bio", "created_at_ms"], id=UUID, username=S,
                   display_name=S, bio=S, avatar_url=nullable(S), created_at_ms=I),
    "Channel": obj(["id", "name", "owner_user_id", "title", "tags"], id=UUID, name=S, owner_user_id=UUID, title=S,
                   category=nullable(S), tags=TAGS, created_at_ms=I, updated_at_ms=I,
                   live_stream_id=nullable(UUID), configured_stream_id=nullable(UUID),
                   followers={**I, "description": "How many users follow the channel."},
                   vod_retention_days={**I, "description": "Days its videos are kept after they end."}),
    "StreamKey": obj(["id", "stream_key", "rtmp_url"], id=UUID, stream_key=S,
                     rtmp_url={**S, "description": "The OBS 'Server' field."}),
    "Stream": obj(["id", "channel_id", "status", "title", "tags"], id=UUID, channel_id=UUID, channel_name=nullable(S),
                  status={"type": "string", "enum": ["configured", "live", "ended"]}, title=S, category=nullable(S),
                  tags=TAGS, configured_at_ms=nullable(I), started_at_ms=nullable(I), ended_at_ms=nullable(I),
                  end_reason=nullable(S), reconnects=I, viewers=I, thumbnail_url=nullable(S), playback_url=S),
    "StreamHealth": obj(["stream_id", "stream_status", "viewers"], stream_id=UUID, stream_status=S, viewers=I,
                        at_ms=nullable(I), status=nullable(S), ingest_bitrate_kbps=nullable(I),
                        video_bitrate_kbps=nullable(I), audio_bitrate_kbps=nullable(I), fps=nullable(N),
                        keyframe_interval_ms=nullable(I), width=nullable(I), height=nullable(I),
                        video_codec=nullable(S), audio_codec=nullable(S), dropped_frames=nullable(I),
                        late_frames=nullable(I), bytes_received=nullable(I)),
    "Playback": obj(["stream_id", "channel_id", "live", "token", "hls", "chat_ws_url"],
                    stream_id=UUID, channel_id=UUID, live=B, status=S,
                    session_id={**S, "description": "The viewer session issued with this token (for heartbeats)."},
                    heartbeat_interval_s={**N, "description": "How often to send a heartbeat."},
                    token={**S, "description": "HMAC playback token (channel scope, expiry, viewer session)."},
                    expires_in=I, expires_at_s=I, hls=obj(["master"], master=S, vod=S), chat_ws_url=S),
    "DirectoryEntry": obj(["stream_id", "channel_id", "channel_name", "title", "viewers"], stream_id=UUID,
                          channel_id=UUID, channel_name=nullable(S), title=S, category=nullable(S), tags=TAGS,
                          viewers=I, started_at_ms=I, thumbnail_url=S),
    "Category": obj(["name", "live_streams", "viewers"], name=S, live_streams=I, viewers=I),
    "ChatMessage": obj(["message_id", "user_id", "username", "text", "sent_at_ms"], message_id=UUID, user_id=UUID,
                       username=S, text=S, emotes={"type": "array", "items": {"type": "object"}},
                       badges={"type": "array", "items": S}, sent_at_ms=I),
    "ModerationAction": obj(["action"], action={"type": "string", "enum": [
        "timeout", "ban", "unban", "delete_message", "set_mode", "mod", "unmod", "vip", "unvip"]},
        user={**S, "description": "User id or username (timeout, ban, unban, mod, unmod, vip, unvip)."},
        duration_s={"type": "integer", "minimum": 1, "maximum": 1209600}, reason=S, message_id=UUID,
        slow_mode_s={"type": "integer", "minimum": 0, "maximum": 120}, subscribers_only=B,
        followers_only_min=nullable(I), emote_only=B, banned_words={"type": "array", "items": S}),
    "Follow": obj(["channel_id", "followed_at_ms", "notifications"], user_id=UUID, channel_id=UUID,
                  channel_name=nullable(S), followed_at_ms=I,
                  notifications={**B, "description": "Whether go-live notifications are on (the bell)."},
                  live_stream_id=nullable(UUID)),
    "EventSubSubscription": obj(["id", "status", "type", "version", "condition", "transport", "created_at"],
                                id=UUID, status={**S, "description": "webhook_callback_verification_pending, "
                                                 "enabled, webhook_callback_verification_failed, "
                                                 "notification_failures_exceeded"},
                                type=S, version=S, condition={"type": "object", "additionalProperties": S},
                                transport=obj(["method", "callback"], method=S, callback=S), created_at=S, cost=I),
    "Video": obj(["id", "channel_id", "title", "duration_ms", "view_count", "url"], id=UUID, channel_id=UUID,
                 channel_name=nullable(S), title=S, category=nullable(S), started_at_ms=nullable(I),
                 ended_at_ms=nullable(I), duration_ms=I, thumbnail_url=S, view_count=I, url=S,
                 owner={**B, "description": "Whether the caller (bearer token) owns the channel."},
                 storyboard=nullable(obj(["vtt_url", "sprite_url"], vtt_url=S, sprite_url=S, interval_s=I,
                                         tile_width=I, tile_height=I, columns=I)),
                 playback=nullable(obj(["token", "session_id", "hls"], token=S, session_id=S,
                                       heartbeat_interval_s=N, expires_at_s=I, hls=obj(["vod"], vod=S)))),
    "Analytics": obj(
        ["channel_id", "stream_id", "from", "to", "viewers_per_minute", "peak_viewers", "avg_viewers", "unique_viewers",
         "watch_time_s", "avg_watch_time_s", "chat_per_minute", "chat_messages", "chatters", "new_followers",
         "new_subscribers", "renditions", "rebuffering_ratio", "ingest"],
        channel_id=UUID, stream_id=nullable(UUID), **{"from": I, "to": I},
        viewers_per_minute={"type": "array", "items": obj(["t", "viewers"], t=I, viewers=I)},
        peak_viewers=I, avg_viewers=N, unique_viewers=I, watch_time_s=N, avg_watch_time_s=N,
        chat_per_minute={"type": "array", "items": obj(["t", "messages"], t=I, messages=I)},
        chat_messages=I, chatters=I, new_followers=I, new_subscribers=I,
        renditions={"type": "array", "items": obj(["rendition", "share"], rendition=S, share=N)},
        rebuffering_ratio=N,
        ingest={"type": "array", "items": obj(["t", "bitrate_kbps", "fps", "dropped_frames"], t=I, bitrate_kbps=I,
                                              fps=N, dropped_frames=I)}),
    "Clip": obj(["id", "channel_id", "video_id", "title", "offset_ms", "duration_ms", "url", "mp4_status"],
                id=UUID, channel_id=UUID, channel_name=nullable(S), video_id=UUID, title=S,
                created_by_user_id=UUID, created_at_ms=I, offset_ms=I, duration_ms=I, from_live=B, view_count=I,
                url=S, thumbnail_url=nullable(S),
                mp4_url={**nullable(S), "description": "Null until the MP4 is made (mp4_status)."},
                mp4_status={"type": "string", "enum": ["processing", "ready", "failed"]},
                playback=nullable(obj(["token", "session_id", "hls"], token=S, session_id=S,
                                      heartbeat_interval_s=N, expires_at_s=I, hls=obj(["master"], master=S),
                                      start_offset_s=N))),
    "SearchResult": obj(["channel_id", "channel_name", "live"], channel_id=UUID, channel_name=S, title=S,
                        category=nullable(S), tags=TAGS, live=B, stream_id=nullable(UUID), viewers=I, score=N),
}

PROBLEMS = {
    "400": "The body is not a JSON object, or a query parameter is malformed.",
    "401": "No, forged or expired bearer token.",
    "403": "Authenticated, but not allowed.",
    "404": "No such resource.",
    "409": "Conflicts with the current state.",
    "413": "Body over the configured limit.",
    "422": "A field is missing or invalid.",
    "429": "Too many failed attempts: wait for Retry-After seconds.",
    "503": "The event log or a view store did not answer.",
}


def problems(*codes: int) -> dict[str, Any]:
    return {str(c): {"description": PROBLEMS[str(c)], "content": {PROBLEM: {"schema": ref("Problem")}}}
            for c in codes}


def ok(schema: dict[str, Any], code: int = 200, description: str = "OK", media: str = JSON) -> dict[str, Any]:
    return {str(code): {"description": description, "content": {media: {"schema": schema}}}}


def body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"required": True, "content": {JSON: {"schema": schema}}}


def path_param(name: str, schema: dict[str, Any] = UUID, description: str = "") -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": schema, "description": description}


def query(name: str, schema: dict[str, Any], description: str, required: bool = False) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": required, "schema": schema, "description": description}


BEARER: list[dict[str, list[str]]] = [{"bearer": []}]
TOKEN = query("token", S, "Playback token from GET /v1/streams/{stream_id}/playback.", required=True)
STREAM = path_param("stream_id")
CHANNEL = path_param("channel_id", S, "Channel id, or its name.")
RENDITION = path_param("rendition", S, "Rendition name from the master playlist (source, 480p30, audio...).")
STREAM_FIELDS = obj(title={**S, "minLength": 1, "maxLength": 140}, category=nullable(S), tags=TAGS)
ROOM = path_param("room", S, "Chat room: the channel id or name.")
FOLLOWER = path_param("user_id", UUID, "The caller's user id.")
HLS_TAG = "HLS origin"


def op(summary: str, tag: str, responses: dict[str, Any], *, params: list[dict[str, Any]] | None = None,
       request: dict[str, Any] | None = None, auth: bool = False, description: str = "") -> dict[str, Any]:
    operation: dict[str, Any] = {"summary": summary, "tags": [tag], "responses": responses}
    if description:
        operation["description"] = description
    if params:
        operation["parameters"] = params
    if request:
        operation["requestBody"] = request
    if auth:
        operation["security"] = BEARER
    return operation


def hls_file(summary: str, media: str, extra: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return op(summary, HLS_TAG, {**ok({"type": "string"}, media=media), "206": {"description": "Partial content"},
                                 "304": {"description": "Not modified (If-None-Match)"},
                                 **problems(403, 404)},
              params=[STREAM, *(extra or []), TOKEN])


def with_problems(operation: dict[str, Any], *codes: int) -> dict[str, Any]:
    """``operation`` with more problem answers."""
    return {**operation, "responses": {**operation["responses"], **problems(*codes)}}


ANALYTICS_OK = {"200": {"description": "OK", "content": {JSON: {"schema": ref("Analytics")},
                                                        "text/csv": {"schema": S}}}}
ANALYTICS_FORMAT = query("format", {"type": "string", "enum": ["json", "csv"]},
                         "csv: the per-minute series as text/csv, one row per minute.")


SUBSCRIPTION = obj(["subscription_id", "user_id", "channel_id", "tier", "months_total", "expires_at_ms", "status"],
                   subscription_id=UUID, user_id=UUID, channel_id=UUID, channel_name=nullable(S), username=nullable(S),
                   tier={"type": "string", "enum": ["1000", "2000", "3000"]}, months_total=I, started_at_ms=I,
                   expires_at_ms=I, is_gift=B, gifted_by_user_id=nullable(UUID), cancelled=B, active=B,
                   status={"type": "string", "enum": ["active", "cancelled", "ended"]}, end_reason=nullable(S))
SUB_CHECKOUT = obj(["order_id", "provider", "sandbox", "status"], order_id=UUID, provider=S, sandbox=B,
                   checkout_url=nullable(S), status={"type": "string", "enum": ["pending", "completed"]},
                   channel_id=UUID, tier=S, amount_minor=I, currency=S,
                   gift_to_user_ids={"type": "array", "items": UUID})

RAID = obj(["id", "from_broadcaster_id", "to_broadcaster_id", "status", "deadline_at_ms"], id=UUID,
           from_broadcaster_id=UUID, to_broadcaster_id=UUID,
           status={"type": "string", "enum": ["pending", "completing", "completed", "cancelled"]},
           created_at=S, created_at_ms=I, deadline_at_ms=I, seconds_left=I, viewers=nullable(I), is_mature=B)
HOST = obj(["channel_id", "hosting"], channel_id=UUID, hosting=nullable(obj(
    ["channel_id", "channel_name", "live_stream_id"], channel_id=UUID, channel_name=S, title=S,
    live_stream_id=UUID, started_at_ms=I)))


OPERATIONS: dict[str, dict[str, dict[str, Any]]] = {
    "/healthz": {"get": op("Liveness", "Operations", ok(obj(status=S)))},
    "/readyz": {"get": op("Readiness: log, registry, Valkey and processors reachable", "Operations",
                          {**ok(obj(status=S)), "503": {"description": "Not ready; lists the problems",
                                                        "content": {JSON: {"schema": obj(status=S, problems={
                                                            "type": "array", "items": S})}}}})},
    "/metrics": {"get": op("Prometheus metrics (configured networks, or the metrics bearer token)", "Operations",
                           {**ok({"type": "string"}, media="text/plain"), **problems(403)})},
    "/openapi.json": {"get": op("This document", "Operations", ok({"type": "object"}))},
    "/v1/users": {"post": op("Sign up", "Accounts", {
        **ok(ref("User"), 201, "Created"), **problems(400, 409, 413, 422, 503)},
        request=body(obj(["username", "password"], username=S, password=S, email=S)))},
    "/v1/auth/login": {"post": op("Log in: a bearer token", "Accounts", {
        **ok(obj(["access_token"], access_token=S, token_type=S, expires_in=I, user=ref("User"))),
        **problems(400, 401, 422, 429, 503)}, request=body(obj(["username", "password"], username=S, password=S)))},
    "/v1/me": {
        "get": op("The signed-in user and their channels", "Accounts", {
            **ok(obj(["user", "channels"], user=ref("User"), channels={"type": "array", "items": ref("Channel")})),
            **problems(401, 404)}, auth=True),
        "patch": op("Change one's display name or bio (sealed with one's own key)", "Accounts", {
            **ok(ref("Profile")), **problems(400, 401, 413, 422)},
            request=body(obj(display_name=S, bio=S)), auth=True),
        "delete": op("Delete one's account: the password is required, the personal data is erased", "Accounts", {
            "204": {"description": "Deleted"}, **problems(400, 401, 422, 429, 503)},
            request=body(obj(["password"], password=S)), auth=True),
    },
    "/v1/me/password": {"post": op("Change one's password: every older token stops working; a new one", "Accounts", {
        **ok(obj(["access_token"], access_token=S, token_type=S, expires_in=I, user=ref("User"))),
        **problems(400, 401, 422, 429, 503)},
        request=body(obj(["old_password", "new_password"], old_password=S, new_password=S)), auth=True)},
    "/v1/me/avatar": {"put": op("Upload an avatar (PNG, JPEG, WebP or GIF, at most 2 MiB and 4096 px a side); "
                                "it is re-encoded to a 256x256 JPEG", "Accounts", {
        **ok(obj(["avatar_url"], avatar_url=S)), **problems(401, 413, 422, 429)},
        request={"required": True, "content": {m: {"schema": {"type": "string", "format": "binary"}}
                                               for m in ("image/png", "image/jpeg", "image/webp", "image/gif")}},
        auth=True)},
    "/avatars/{user_id}/{name}": {"get": op("An avatar image (immutable)", "Accounts", {
        **ok({"type": "string"}, media="image/jpeg"), **problems(404)},
        params=[path_param("user_id"), path_param("name", S, "The image's name, as avatar_url gives it.")])},
    "/v1/users/{user}": {"get": op("A user's public profile and channels", "Accounts", {
        **ok({"allOf": [ref("Profile"), obj(channels={"type": "array", "items": ref("Channel")})]}),
        **problems(404)}, params=[path_param("user", S, "User id, or the username.")])},
    "/v1/channels": {"post": op("Create a channel; the answer holds its stream key", "Channels", {
        **ok({"allOf": [ref("Channel"), ref("StreamKey")]}, 201, "Created"), **problems(400, 401, 409, 422)},
        request=body(obj(["name"], name=S, title=S, category=S, tags=TAGS)), auth=True)},
    "/v1/channels/{channel_id}": {
        "get": op("A channel, with its live and configured stream ids", "Channels",
                  {**ok(ref("Channel")), **problems(404)}, params=[CHANNEL]),
        "patch": op("Change a channel's title, category, tags or video retention", "Channels",
                    {**ok(ref("Channel")), **problems(400, 401, 403, 404, 422)}, params=[CHANNEL],
                    request=body(obj(title=S, category=S, tags=TAGS, vod_retention_days={
                        "type": "integer", "minimum": 0, "maximum": 3650,
                        "description": "Days the channel's videos are kept (0: the platform default)."})),
                    auth=True),
    },
    "/v1/channels/{channel_id}/stream-key": {"get": op("Reveal the stream key (owner only)", "Channels", {
        **ok(ref("StreamKey")), **problems(401, 403, 404, 409)}, params=[CHANNEL], auth=True)},
    "/v1/channels/{channel_id}/stream-key/regenerate": {"post": op(
        "Rotate the stream key; the old one stops working at once", "Channels",
        {**ok(ref("StreamKey")), **problems(401, 403, 404)}, params=[CHANNEL], auth=True)},
    "/v1/streams": {"post": op("Set up the next broadcast (status configured)", "Streams", {
        **ok(ref("Stream"), 201, "Created"), **problems(400, 401, 403, 404, 409, 422)},
        request=body({**STREAM_FIELDS, "required": ["channel_id"],
                      "properties": {**STREAM_FIELDS["properties"], "channel_id": S}}), auth=True,
        description="The ingest adopts this stream's id, title and tags when the channel's encoder connects.")},
    "/v1/streams/{stream_id}": {
        "get": op("A stream: status, metadata, viewers", "Streams", {**ok(ref("Stream")), **problems(404)},
                  params=[STREAM]),
        "patch": op("Change title, category or tags of a configured or live stream", "Streams", {
            **ok(ref("Stream")), **problems(400, 401, 403, 404, 409, 422)}, params=[STREAM],
            request=body(STREAM_FIELDS), auth=True),
    },
    "/v1/streams/{stream_id}/end": {"post": op("End a stream; its VOD is available at once", "Streams", {
        **ok(ref("Stream")), **problems(401, 403, 404)}, params=[STREAM], auth=True)},
    "/v1/streams/{stream_id}/health": {"get": op("Latest ingest health of a live stream (owner only)", "Streams", {
        **ok(ref("StreamHealth")), **problems(401, 403, 404)}, params=[STREAM], auth=True)},
    "/v1/streams/{stream_id}/playback": {"get": op("Signed HLS URLs and the chat WebSocket URL", "Playback", {
        **ok(ref("Playback")), **problems(404, 429)}, params=[STREAM])},
    "/v1/streams/{stream_id}/playback/refresh-token": {"post": op("Rotate a playback token before it expires",
                                                                  "Playback", {**ok(ref("Playback")),
                                                                               **problems(403, 404, 429)},
                                                                  params=[STREAM, TOKEN])},
    "/v1/streams/{stream_id}/heartbeat": {"post": op("Viewer heartbeat (every heartbeat_interval_s while playing)",
                                                     "Playback", {
        "204": {"description": "Accepted"}, **problems(400, 401, 403, 404, 413, 422, 429, 503)}, params=[STREAM],
        request=body(obj(["session_id", "token", "rendition"], session_id=S, token=S, rendition=S,
                         buffer_health_s=N, bitrate_kbps=I, latency_ms=I, dropped_frames=I, channel_id=UUID)),
        description="Answers 204 and produces a Heartbeat event; counting happens in the processors. "
                    "session_id and token come from the playback answer (403 otherwise); one beat per session "
                    "per heartbeat_interval_s is taken, an earlier one is 429.")},
    "/v1/directory/streams": {"get": op("Live streams, most watched first", "Discovery", {
        **ok(obj(["streams", "next_cursor"], streams={"type": "array", "items": ref("DirectoryEntry")},
                 next_cursor=nullable(S))), **problems(400, 422)},
        params=[query("category", S, "Only this category."),
                query("sort", {"type": "string", "enum": ["viewers", "recent"]}, "Order (default viewers)."),
                query("limit", {"type": "integer", "minimum": 1, "maximum": 100}, "Page size (default 24)."),
                query("cursor", S, "next_cursor of the previous page.")])},
    "/v1/recommendations": {"get": op(
        "Live streams for the signed-in viewer: co-watched channels first, then popular ones", "Discovery", {
            **ok(obj(["recommendations", "personalized"], recommendations={"type": "array", "items": {
                "allOf": [ref("DirectoryEntry"), obj(["score", "reason"], score=N, reason={
                    "type": "string", "enum": ["cowatch", "popular"]})]}},
                personalized={**B, "description": "false: the analytics store did not answer (cold start)."})),
            **problems(400, 401)},
        params=[query("limit", {"type": "integer", "minimum": 1, "maximum": 50}, "How many (default 12).")],
        auth=True)},
    "/v1/categories": {"get": op("Categories with live stream and viewer totals", "Discovery", ok(obj(
        ["categories"], categories={"type": "array", "items": ref("Category")})))},
    "/v1/search": {"get": op("Search channels by name, title and tags; live streams first", "Discovery", {
        **ok(obj(["results"], results={"type": "array", "items": ref("SearchResult")})), **problems(400, 422)},
        params=[query("q", S, "Words or word prefixes.", required=True),
                query("live_only", B, "Only channels that are live."),
                query("limit", {"type": "integer", "minimum": 1, "maximum": 100}, "Most results (default 20).")])},
    "/v1/chat/{room}/moderate": {"post": op("Moderate a chat room (broadcaster and moderators)", "Chat", {
        **ok({"type": "object"}), **problems(400, 401, 403, 404, 422)}, params=[ROOM],
        request=body(ref("ModerationAction")), auth=True,
        description="Each action is an event; connected clients see deletions, bans and mode changes at once.")},
    "/v1/chat/{room}/moderation-log": {"get": op("The room's moderation actions, newest first", "Chat", {
        **ok(obj(["channel_id", "actions"], channel_id=UUID, actions={"type": "array", "items": {"type": "object"}})),
        **problems(401, 403, 404, 422)}, params=[ROOM, query("limit", I, "Most actions (default 100).")],
        auth=True)},
    "/v1/chat/{room}/messages": {"get": op("Chat replay around a moment (VOD chat), paged by cursor", "Chat", {
        **ok(obj(["channel_id", "messages", "prev_cursor", "next_cursor"], channel_id=UUID, around_timestamp=I,
                 messages={"type": "array", "items": ref("ChatMessage")}, prev_cursor=nullable(S),
                 next_cursor=nullable(S))), **problems(400, 404, 422, 503)},
        params=[ROOM, query("around_timestamp", S, "Epoch milliseconds or ISO 8601 (required without a cursor)."),
                query("before", I, "Messages at or before the moment (default 50, at most 200)."),
                query("after", I, "Messages after it (default 50, at most 200)."),
                query("cursor", S, "prev_cursor or next_cursor of an earlier answer: the page before or after it "
                                   "(not with around_timestamp, before or after; a malformed one is a 400)."),
                query("limit", {"type": "integer", "minimum": 0, "maximum": 200},
                      "Messages in a cursor's page (default 50).")],
        description="Oldest first. Deleted messages, and what a user said up to being banned or timed out in the "
                    "channel, are never in it. A cursor is opaque and belongs to its channel.")},
    "/v1/users/{user_id}/follows": {
        "post": op("Follow a channel (following it again changes nothing)", "Follows", {
            **ok(ref("Follow"), 201, "Followed"), **ok(ref("Follow"), 200, "Already followed"),
            **problems(400, 401, 403, 413, 422, 429, 503)}, params=[FOLLOWER],
            request=body(obj(["channel_id"], channel_id={**S, "description": "Channel id or name."},
                             notifications={**B, "description": "Go-live notifications (default true)."})),
            auth=True, description="The path's user must be the caller. Following your own or a missing channel "
                                   "is a 422. Follow changes are bounded per user (429 with Retry-After)."),
        "get": op("The caller's followed channels, newest follow first", "Follows", {
            **ok(obj(["total", "follows", "next_cursor"], total=I, follows={"type": "array", "items": ref("Follow")},
                     next_cursor=nullable(S))), **problems(400, 401, 403, 422)}, params=[
            FOLLOWER, query("live", B, "Only channels live now (a page may be short; go on with next_cursor)."),
            query("limit", {"type": "integer", "minimum": 1, "maximum": 100}, "Page size (default 20)."),
            query("cursor", S, "next_cursor of the previous page.")], auth=True),
    },
    "/v1/users/{user_id}/follows/{channel_id}": {
        "patch": op("Turn go-live notifications for a followed channel on or off", "Follows", {
            **ok(ref("Follow")), **problems(400, 401, 403, 404, 413, 422, 429, 503)},
            params=[FOLLOWER, CHANNEL], request=body(obj(["notifications"], notifications=B)), auth=True),
        "delete": op("Unfollow a channel (204 also when it was not followed)", "Follows", {
            "204": {"description": "Not following"}, **problems(401, 403, 404, 429, 503)},
            params=[FOLLOWER, CHANNEL], auth=True),
    },
    "/v1/channels/{channel_id}/followers": {"get": op(
        "A channel's follower count; its owner also gets the followers, newest first", "Follows", {
            **ok(obj(["channel_id", "total"], channel_id=UUID, total=I, next_cursor=nullable(S), followers={
                "type": "array", "items": obj(["user_id", "followed_at_ms"], user_id=UUID, username=nullable(S),
                                              followed_at_ms=I)})), **problems(400, 401, 404, 422)},
        params=[CHANNEL, query("limit", {"type": "integer", "minimum": 1, "maximum": 100}, "Page size (default 20)."),
                query("cursor", S, "next_cursor of the previous page (owner).")],
        description="Without the owner's bearer token the answer holds the count only.")},
    "/v1/subscriptions": {"post": op("Subscribe to a channel, or gift subscriptions to its viewers", "Subscriptions", {
        **ok(SUB_CHECKOUT, 201, "Ordered: completed at once by the sandbox provider, else pay at checkout_url"),
        **problems(400, 401, 409, 413, 422, 503)},
        request=body(obj(["channel_id", "tier"], channel_id={**S, "description": "Channel id or name."},
                         tier={"type": ["integer", "string"], "enum": [1000, 2000, 3000, "1000", "2000", "3000"]},
                         gift_to={**S, "description": "Gift one subscription to this user (id or name)."},
                         gift_count={**I, "minimum": 1, "description": "Gift this many to random eligible viewers."},
                         message={**S, "maxLength": 500, "description": "Shown with the announcement in chat."})),
        auth=True, description="Refusals charge nothing: an unknown tier, your own channel, a gift to a banned user, "
                               "yourself or the broadcaster, more gifts than eligible viewers (signed-in viewers who "
                               "watched or chatted recently, not banned, not subscribed) are a 422 with a reason; "
                               "a subscription already running is a 409.")},
    "/v1/me/subscriptions": {"get": op("The caller's running subscriptions", "Subscriptions", {
        **ok(obj(["total", "subscriptions"], total=I, subscriptions={"type": "array", "items": SUBSCRIPTION})),
        **problems(400, 401, 503)}, auth=True)},
    "/v1/me/subscriptions/{channel_id}": {"delete": op("Cancel at period end: no renewal, it ends at expires_at",
                                                       "Subscriptions", {
        **ok(SUBSCRIPTION), **problems(401, 404, 503)}, params=[CHANNEL], auth=True)},
    "/v1/me/subscriptions/{channel_id}/renewal": {"post": op(
        "Sandbox provider only: pay the next period now (the stand-in for a provider's renewal)", "Subscriptions", {
            **ok(SUB_CHECKOUT, 201, "Renewed"), **problems(401, 403, 404, 409, 503)}, params=[CHANNEL], auth=True)},
    "/v1/channels/{channel_id}/subscriptions": {"get": op(
        "The owner's view of a channel's subscribers: tiers, total, and points (tier 1000 = 1, 2000 = 2, 3000 = 6)",
        "Subscriptions", {
            **ok(obj(["channel_id", "total", "points", "by_tier", "subscribers", "bits_by_day"], channel_id=UUID,
                     total=I, points=I, by_tier={"type": "object", "properties": {"1000": I, "2000": I, "3000": I}},
                     subscribers={"type": "array", "items": SUBSCRIPTION},
                     bits_by_day={"type": "array", "description": "Bits cheered in the channel per UTC day, the last "
                                  "30 days, oldest first", "items": obj(["day", "bits"], day=S, bits=I)})),
            **problems(400, 401, 403, 404, 422)},
        params=[CHANNEL, query("limit", {"type": "integer", "minimum": 1, "maximum": 1000},
                               "Most subscribers listed (default 100).")], auth=True)},
    "/v1/bits/purchases": {"post": op("Buy a bit pack", "Bits", {
        **ok(obj(["order_id", "provider", "sandbox", "status", "pack", "bits"], order_id=UUID, provider=S, sandbox=B,
                 checkout_url=nullable(S), status={"type": "string", "enum": ["pending", "completed"]}, pack=S,
                 bits=I, amount_minor=I, currency=S), 201,
            "Ordered: completed at once by the sandbox provider, else pay at checkout_url"),
        **problems(400, 401, 413, 422, 503)},
        request=body(obj(["pack"], pack={**S, "description": "The pack's bits: 100, 500, 1000, ..."})), auth=True,
        description="An unknown pack is a 422 (reason unknown_pack) and charges nothing. An Idempotency-Key header "
                    "makes a retried request the same order.")},
    "/v1/me/bits": {"get": op("The caller's bits: balance (never negative), owed after a reversal, held by cheers "
                              "in flight, and the packs on sale", "Bits", {
        **ok(obj(["balance", "owed", "held", "packs"], balance=I, owed=I, held=I, bought=I, spent=I, reversed=I,
                 currency=S, provider=S, sandbox=B, packs={"type": "array", "items": obj(pack=S, bits=I,
                                                                                        amount_minor=I)})),
        **problems(401, 503)}, auth=True)},
    "/v1/channels/{channel_id}/bits/leaderboard": {"get": op("A channel's top cheerers", "Bits", {
        **ok(obj(["channel_id", "period", "entries"], channel_id=UUID, period=S,
                 entries={"type": "array", "items": obj(rank=I, user_id=UUID, username=nullable(S), bits=I)})),
        **problems(400, 404, 503)},
        params=[CHANNEL, query("period", {"type": "string", "enum": ["day", "week", "month", "all"]},
                               "UTC day, ISO week, calendar month or all time (default all)."),
                query("limit", {"type": "integer", "minimum": 1, "maximum": 100}, "Entries (default 10).")])},
    "/v1/donations": {"post": op("Donate to a channel, with a message shown in its chat", "Bits", {
        **ok(obj(["order_id", "provider", "sandbox", "status"], order_id=UUID, provider=S, sandbox=B,
                 checkout_url=nullable(S), status={"type": "string", "enum": ["pending", "completed"]},
                 channel_id=UUID, amount_minor=I, currency=S, message=nullable(S)), 201, "Ordered"),
        **problems(400, 401, 413, 422, 503)},
        request=body(obj(["channel_id", "amount_minor"], channel_id={**S, "description": "Channel id or name."},
                         amount_minor={**I, "description": "In the currency's minor unit (cents)."},
                         currency={**S, "description": "The platform's currency (default)."},
                         message={**S, "maxLength": 300})), auth=True,
        description="Out-of-range amounts, another currency and your own channel are a 422 and charge nothing.")},
    "/v1/channels/{channel_id}/donations": {"get": op("A channel's last donations", "Bits", {
        **ok(obj(["channel_id", "donations"], channel_id=UUID, donations={"type": "array", "items": obj(
            order_id=UUID, user_id=UUID, amount_minor=I, currency=S, message=nullable(S), at_ms=I)})),
        **problems(400, 404, 503)},
        params=[CHANNEL, query("limit", {"type": "integer", "minimum": 1, "maximum": 100}, "Entries (default 20).")])},
    "/v1/payments/stripe/webhook": {"post": op("Stripe's webhook endpoint (signed with the endpoint secret)",
                                               "Payments", {
        **ok(obj(["received", "duplicate"], received=B, duplicate=B, type=nullable(S))),
        **problems(400, 404, 413, 503)},
        request=body(obj(id=S, type=S, data={"type": "object"})),
        description="Verified with the Stripe-Signature header (t=..., v1=HMAC-SHA256 of 't.body'); a bad or stale "
                    "signature is a 400 and changes nothing. Idempotent by the Stripe event id: a replay is a 200 "
                    "with duplicate true. 404 when the platform does not use Stripe; 503 (payment_not_yet_known) "
                    "for a reversal of a payment not reported yet, which Stripe delivers again later.")},
    "/v1/me/notifications": {"get": op("The signed-in user's notifications, newest first", "Notifications", {
        **ok(obj(["notifications", "unread_count", "next_cursor"], unread_count=I, next_cursor=nullable(S),
                 notifications={"type": "array", "items": {"type": "object"}})), **problems(400, 401, 503)},
        params=[query("limit", {"type": "integer", "minimum": 1, "maximum": 100}, "Page size (default 20)."),
                query("cursor", S, "next_cursor of the previous page.")], auth=True,
        description="New ones are also pushed over the WebSocket /v1/me/notifications/ws, signed in by a first "
                    "frame {\"type\": \"auth\", \"token\": JWT}.")},
    "/v1/me/notifications/read": {"post": op("Mark notifications read: some ids, or all", "Notifications", {
        **ok(obj(["unread_count"], unread_count=I)), **problems(400, 401, 413, 422, 503)},
        request=body(obj(ids={"type": "array", "items": S}, all=B)), auth=True)},
    "/v1/eventsub/subscriptions": {
        "post": op("Create an EventSub webhook subscription (Twitch's shape)", "EventSub", {
            **ok(obj(["data"], data={"type": "array", "items": ref("EventSubSubscription")}, total=I, total_cost=I,
                     max_total_cost=I), 202, "Accepted; the callback gets the challenge next"),
            **problems(400, 401, 403, 409, 413, 503)}, auth=True,
            request=body(obj(["type", "version", "condition", "transport"], type=S, version=S,
                             condition={"type": "object", "additionalProperties": S},
                             transport=obj(["method", "callback", "secret"], method=S, callback=S, secret=S))),
            description="Types: stream.online 1, stream.offline 1, channel.update 2, channel.follow 2 and "
                        "channel.chat.message 1 (the last two on your own channels). The callback must be https on "
                        "a public address and echo the challenge; the secret is 10-100 ASCII characters. "
                        "channel.raid 1 takes condition.from_broadcaster_user_id or to_broadcaster_user_id."),
        "get": op("The caller's EventSub subscriptions", "EventSub", {
            **ok(obj(["data"], data={"type": "array", "items": ref("EventSubSubscription")}, total=I, total_cost=I,
                     max_total_cost=I, pagination={"type": "object"})), **problems(401)},
            params=[query("status", S, "Only this status."), query("type", S, "Only this type.")], auth=True),
        "delete": op("Delete an EventSub subscription", "EventSub", {
            "204": {"description": "Deleted"}, **problems(400, 401, 404, 503)},
            params=[query("id", UUID, "The subscription.", required=True)], auth=True),
    },
    "/v1/eventsub/subscriptions/{subscription_id}": {"delete": op("Delete an EventSub subscription", "EventSub", {
        "204": {"description": "Deleted"}, **problems(401, 404, 503)}, params=[path_param("subscription_id")],
        auth=True)},
    "/v1/channels/{channel_id}/videos": {"get": op("A channel's videos (ended broadcasts)", "Videos", {
        **ok(obj(["data", "cursor"], data={"type": "array", "items": ref("Video")}, cursor=nullable(S))),
        **problems(400, 401, 404)}, params=[
        CHANNEL, query("sort", {"type": "string", "enum": ["time", "views"]}, "Newest (default) or most viewed."),
        query("limit", {"type": "integer", "minimum": 1, "maximum": 100}, "Page size (default 20)."),
        query("cursor", S, "cursor of the previous page (a malformed one is a 400).")])},
    "/v1/videos/{video_id}": {
        "get": op("A video, with signed playback URLs", "Videos", {**ok(ref("Video")), **problems(401, 404)},
                  params=[path_param("video_id")], description="404 once deleted, and while still live. "
                  "playback is null when this client has had its playback sessions for the minute."),
        "delete": op("Delete a video (its owner)", "Videos", {"204": {"description": "Deleted"},
                                                              **problems(401, 403, 404, 503)},
                     params=[path_param("video_id")], auth=True,
                     description="The video leaves every list and its playlists answer 404 at once; its objects "
                                 "are purged from the store after, except the segments its clips use."),
    },
    "/vod/{video_id}/{name}": {"get": op("A video's previews: thumb.jpg, sprite.jpg or storyboard.vtt", "Videos", {
        **ok({"type": "string"}, media="image/jpeg"), "304": {"description": "Not modified (If-None-Match)"},
        **problems(404)}, params=[path_param("video_id"), path_param("name", S, "thumb.jpg, sprite.jpg or "
                                                                           "storyboard.vtt")])},
    "/v1/raids": {
        "post": op("Start a raid: a 90-second countdown, then the channel's viewers move to the target", "Raids", {
            **ok(obj(["data"], data={"type": "array", "items": RAID})), **problems(400, 401, 403, 409, 413, 422, 429,
                                                                                  503)}, auth=True,
            request=body(obj(["from_broadcaster_id", "to_broadcaster_id"], from_broadcaster_id=S,
                             to_broadcaster_id=S)),
            description="As Twitch's Start a raid: you own the raiding channel, the target is live and not yours, at "
                        "most 10 raids per 10 minutes per channel (429); one raid at a time (409)."),
        "get": op("The channel's raid counting down", "Raids", {
            **ok(obj(["data"], data={"type": "array", "items": RAID})), **problems(400, 401, 403, 404, 422)},
            params=[query("broadcaster_id", S, "The raiding channel (yours).", required=True)], auth=True),
        "delete": op("Cancel the channel's raid", "Raids", {
            "204": {"description": "Cancelled"}, **problems(400, 401, 403, 404, 409, 422, 503)},
            params=[query("broadcaster_id", S, "The raiding channel (yours).", required=True)], auth=True),
    },
    "/v1/raids/{raid_id}/go": {"post": op("Raid Now: go ahead before the countdown ends", "Raids", {
        **ok(obj(["data"], data={"type": "array", "items": RAID})), **problems(401, 403, 404, 409, 503)},
        params=[path_param("raid_id")], auth=True)},
    "/v1/channels/{channel_id}/host": {
        "post": op("Host a live channel on your offline channel's page", "Raids", {
            **ok(HOST), **problems(400, 401, 403, 404, 409, 413, 422, 503)}, params=[CHANNEL], auth=True,
            request=body(obj(["target_channel_id"], target_channel_id=S))),
        "get": op("What the channel's page plays while it hosts (hosting is null otherwise)", "Raids", {
            **ok(HOST), **problems(404)}, params=[CHANNEL]),
        "delete": op("Stop hosting", "Raids", {"204": {"description": "Not hosting"},
                                               **problems(401, 403, 404, 503)}, params=[CHANNEL], auth=True),
    },
    "/v1/clips": {"post": op("Make a clip of a live stream or of a video", "Clips", {
        **ok(ref("Clip"), 201, "Made (the MP4 follows)"), **problems(400, 401, 404, 409, 413, 422, 429, 503)},
        request=body(obj(broadcaster_id={**S, "description": "Clip the live stream of this channel (id or name)."},
                         video_id={**UUID, "description": "Or clip this video..."},
                         offset_s={**N, "description": "...from this playhead second."},
                         duration_s={"type": "number", "minimum": 5, "maximum": 60,
                                     "description": "Default 30."},
                         title={**S, "maxLength": 140})), auth=True,
        description="A live clip is the last duration_s; a channel that is not live is a 409. A clip outside the "
                    "video is a 422. Clips per user are bounded per minute (429).")},
    "/v1/clips/{clip_id}": {"get": op("A clip, with signed playback URLs", "Clips", {
        **ok(ref("Clip")), **problems(404)}, params=[path_param("clip_id")],
        description="playback is null when this client has had its playback sessions for the minute.")},
    "/v1/clips/{clip_id}.mp4": {"get": op("A clip's MP4 (stream copy of its segments)", "Clips", {
        **ok({"type": "string"}, media="video/mp4"), "304": {"description": "Not modified (If-None-Match)"},
        **problems(404)}, params=[path_param("clip_id")])},
    "/v1/clips/{clip_id}/thumb.jpg": {"get": op("A clip's thumbnail", "Clips", {
        **ok({"type": "string"}, media="image/jpeg"), "304": {"description": "Not modified (If-None-Match)"},
        **problems(404)}, params=[path_param("clip_id")])},
    "/v1/channels/{channel_id}/clips": {"get": op("A channel's clips", "Clips", {
        **ok(obj(["data", "cursor"], data={"type": "array", "items": ref("Clip")}, cursor=nullable(S))),
        **problems(400, 404)}, params=[
        CHANNEL, query("sort", {"type": "string", "enum": ["views", "time"]}, "Most viewed (default) or newest."),
        query("limit", {"type": "integer", "minimum": 1, "maximum": 100}, "Page size (default 20)."),
        query("cursor", S, "cursor of the previous page (a malformed one is a 400).")])},
    "/hls/clips/{clip_id}/master.m3u8": {"get": op("A clip's master playlist", HLS_TAG, {
        **ok({"type": "string"}, media=M3U8), **problems(403, 404)}, params=[path_param("clip_id"), TOKEN])},
    "/hls/clips/{clip_id}/{rendition}.m3u8": {"get": op(
        "A clip's media playlist: whole segments, EXT-X-START at the clip's start", HLS_TAG, {
            **ok({"type": "string"}, media=M3U8), **problems(403, 404)},
        params=[path_param("clip_id"), path_param("rendition", S, "source or audio"), TOKEN])},
    "/v1/streams/{stream_id}/analytics": {"get": op(
        "A broadcast's analytics (the channel owner only)", "Analytics", {
            **ANALYTICS_OK, **problems(400, 401, 403, 404, 503)},
        params=[STREAM, ANALYTICS_FORMAT], auth=True)},
    "/v1/channels/{channel_id}/analytics": {"get": op(
        "A channel's analytics over a time range (the owner only)", "Analytics", {
            **ANALYTICS_OK, **problems(400, 401, 403, 404, 503)},
        params=[CHANNEL, query("from", S, "Start: epoch ms or ISO 8601 (default: 7 days before to)."),
                query("to", S, "End, excluded: epoch ms or ISO 8601 (default: now); at most 366 days after from."),
                ANALYTICS_FORMAT], auth=True)},
    "/thumbs/{stream_id}.jpg": {"get": op("Latest thumbnail of a live stream", "Discovery", {
        **ok({"type": "string"}, media="image/jpeg"), **problems(404)}, params=[STREAM])},
    "/hls/{stream_id}/master.m3u8": {"get": hls_file("Live master playlist", M3U8)},
    "/hls/{stream_id}/vod.m3u8": {"get": hls_file("VOD master playlist (after the stream ends)", M3U8)},
    "/hls/{stream_id}/{rendition}/index.m3u8": {"get": with_problems(hls_file(
        "Live media playlist (LL-HLS where the rendition has parts)", M3U8, [
            RENDITION, query("_HLS_msn", I, "Blocking reload: answer once this segment is complete (bis 6.2.5.2)."),
            query("_HLS_part", I, "With _HLS_msn: answer once this part of it exists."),
            query("_HLS_skip", S, "YES or v2: a delta update (bis 6.2.5.1).")]), 400, 503)},
    "/hls/{stream_id}/{rendition}/vod.m3u8": {"get": hls_file("VOD media playlist", M3U8, [RENDITION])},
    "/hls/{stream_id}/{rendition}/init.mp4": {"get": hls_file("fMP4 initialisation segment", "video/mp4",
                                                              [RENDITION])},
    "/hls/{stream_id}/{rendition}/{seq}.m4s": {"get": hls_file("fMP4 media segment", "video/iso.segment", [
        RENDITION, path_param("seq", {"type": "integer", "minimum": 0}, "Segment sequence number.")])},
    "/hls/{stream_id}/{rendition}/{seq}.{part}.m4s": {"get": with_problems(hls_file(
        "LL-HLS part; the preload-hinted one is held until it exists", "video/iso.segment", [
            RENDITION, path_param("seq", {"type": "integer", "minimum": 0}, "Segment sequence number."),
            path_param("part", {"type": "integer", "minimum": 0}, "Part index within the segment.")]), 503)},
}


def document(server_url: str | None = None) -> dict[str, Any]:
    """The OpenAPI document."""
    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": "Glasscast API", "version": "1.0.0",
                 "description": "Live streaming: accounts, channels, streams, playback, discovery, chat. Errors "
                                "are RFC 9457 problem details (application/problem+json). Chat itself is a "
                                "WebSocket, `/v1/chat/ws?channel=ID`, signed in by a first frame "
                                "`{\"type\": \"auth\", \"token\": JWT}`, never a token in the URL (frames: JSON "
                                "objects, one per line; see gateways/chat/frames.py)."},
        "paths": OPERATIONS,
        "components": {"schemas": COMPONENTS,
                       "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}}},
    }
    if server_url:
        doc["servers"] = [{"url": server_url}]
    return doc


async def openapi_json(request: Request) -> JSONResponse:
    """The document, with the configured public URL as its server.

    Never the request's Host header: the answer is cacheable (``public``), so a
    forged Host would be served to everyone behind a shared cache.
    """
    url = services(request).settings.gateway_url
    return JSONResponse(document(url), headers={"Cache-Control": "public, max-age=60"})


routes = [Route("/openapi.json", openapi_json, methods=["GET"])]
