"""One RTMP connection: handshake, commands, stream-key auth, then media into a pipeline.

The flow a publisher (OBS, ffmpeg) follows (RTMP spec 1.0 section 7.2):
connect -> releaseStream/FCPublish -> createStream -> publish(key) ->
@setDataFrame(onMetaData) -> audio/video ... -> FCUnpublish/deleteStream.

Bad input ends this connection only: any ProtocolError, an unknown message
type, a stalled peer (idle timeout) or a slow handshake closes it with one log
line.  The stream key is never logged and never leaves this module; only its
SHA-256 is looked up.

Until its key is accepted a connection has little allowance (``admission.py`` holds the
slots): a deadline from connect that no incoming byte extends
(``GLASSCAST_INGEST_PUBLISH_DEADLINE_S``), messages of a few KiB at most
(``GLASSCAST_INGEST_MAX_MESSAGE_BYTES_BEFORE_PUBLISH``, so the chunk reader holds tens of
KiB, not the 8 MiB a keyframe may need) and ``MAX_MESSAGES_BEFORE_PUBLISH`` messages, which
also bounds what we write back to a peer that never reads.  A live session looks every
second whether its owner ended the stream or rotated the key it publishes with, and ends
it (``StreamEnded`` with ``KEY_ROTATED``) when the key changed.

Ownership of the live stream is a lease in Valkey (``live.py``): the session takes it at
publish (continuing a parked stream, or one whose ingest process died, within the grace
window), the server renews it every second and the pipeline before every GOP.  Valkey
being down degrades, it does not kill: a live session keeps cutting and announcing GOPs
(lease writes are retried and logged), while a new publish, which needs the channel view,
is refused at once with ``NetStream.Publish.Rejected`` and its socket closed.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from media.ingest import chunk, commands, events, flv
from media.ingest.admission import Admission
from media.ingest.chunk import ChunkReader, ChunkWriter, RtmpMessage
from media.ingest.errors import ProtocolError, UnsupportedCodecError
from media.ingest.events import frame_rate
from media.ingest.handshake import ServerHandshake
from media.ingest.live import VALKEY_ERRORS, Claim, LiveStream
from media.ingest.pipeline import StreamPipeline, continue_after_stored
from schemas.records.stream import StreamEndReason, StreamHealth
from views.channels import hash_stream_key

if TYPE_CHECKING:
    from media.ingest.server import IngestContext
    from views.channels import ChannelView

log = logging.getLogger("glasscast.ingest")

READ_BYTES = 64 * 1024
END_CHECK_S = 1.0  # how often a publishing session looks whether its owner ended the stream
# A publisher needs about ten messages before publish (connect, releaseStream, FCPublish,
# createStream, publish and control messages); each may draw an answer from us.
MAX_MESSAGES_BEFORE_PUBLISH = 64
# Message types a publisher may send that we read and drop (RTMP spec 5.4, 6.2, 7.1).
IGNORED_TYPES = {chunk.ACKNOWLEDGEMENT, chunk.USER_CONTROL, chunk.WINDOW_ACK_SIZE, chunk.SET_PEER_BANDWIDTH,
                 chunk.SET_CHUNK_SIZE, chunk.ABORT, chunk.SHARED_OBJECT_AMF0, chunk.SHARED_OBJECT_AMF3,
                 chunk.DATA_AMF3}


class CloseConnection(Exception):
    """End this connection; ``dropped`` means the publisher did not unpublish."""

    def __init__(self, why: str, dropped: bool = True, ended: bool = False,
                 end_reason: StreamEndReason = "PUBLISHER_STOPPED") -> None:
        super().__init__(why)
        self.dropped = dropped
        self.ended = ended  # the stream already ended elsewhere: announce nothing more
        self.end_reason = end_reason  # the StreamEnded reason, when not dropped and not ended


class RtmpSession:
    def __init__(self, ctx: IngestContext, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 admission: Admission | None = None) -> None:
        self.ctx = ctx
        self.settings = ctx.settings.ingest
        self.reader = reader
        self.writer = writer
        self.id = uuid.uuid4().hex[:12]
        peer = writer.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        self.chunks = ChunkReader(self.settings.max_message_bytes_before_publish)
        self.admission = admission
        self.key_accepted = False
        self.key_hash = ""  # the SHA-256 of the key this connection published with
        self.key_seq = -1  # the channel view's offset when that key was accepted
        self.messages_before_publish = 0
        self.close_reason: str | None = None  # why ``close`` cut the connection, if it did
        self._deadline: asyncio.TimerHandle | None = None
        self.out = ChunkWriter()
        self.acked = 0
        self.metadata: dict[str, Any] = {}
        self.pipeline: StreamPipeline | None = None
        self.channel_id: str | None = None
        self.channel: ChannelView | None = None
        self.started_sent = False
        self.checked_types: set[int] = set()  # audio/video message types whose codec was accepted
        self.last_media = time.monotonic()
        self.last_end_check = 0.0
        self.lost = False  # another session (on any ingest process) holds the stream now
        self.meta: tuple[str, str | None, tuple[str, ...]] = ("", None, ())  # title, category, tags

    # -- I/O ------------------------------------------------------------------
    def send(self, *messages: RtmpMessage) -> None:
        for msg in messages:
            self.writer.write(self.out.encode(msg))

    async def _read(self, timeout_s: float) -> bytes:
        try:
            data = await asyncio.wait_for(self.reader.read(READ_BYTES), timeout_s)
        except TimeoutError:
            raise CloseConnection(f"no data for {timeout_s:.0f} s") from None
        if not data:
            raise CloseConnection("peer closed the connection")
        return data

    def close(self, why: str) -> None:
        """Cut the connection now, whatever the session awaits; it ends with ``why`` as its reason."""
        if self.close_reason is None:
            self.close_reason = why
        self.writer.transport.abort()

    def _await_publish(self) -> None:
        """Start the deadline to publish: a timer, so no byte the peer sends can put it off."""
        self.key_accepted = False
        self.messages_before_publish = 0
        if self.admission is not None:
            self.admission.set_publishing(self.id, False)
        if self._deadline is not None:
            self._deadline.cancel()
        deadline_s = self.settings.publish_deadline_s
        self._deadline = asyncio.get_running_loop().call_later(
            deadline_s, self.close, f"publish deadline: no stream key accepted within {deadline_s:g} s")

    def _accept_key(self) -> None:
        """The stream key checked out: no deadline, and the buffers a live stream needs."""
        if self.close_reason is not None:  # cut while the key was being looked up
            raise CloseConnection(self.close_reason, dropped=False)
        self.key_accepted = True
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        self.chunks.set_max_message_bytes(chunk.MAX_MESSAGE_BYTES)
        if self.admission is not None:
            self.admission.set_publishing(self.id, True)

    async def run(self) -> None:
        reason, dropped, ended = "closed", True, False
        end_reason: StreamEndReason = "PUBLISHER_STOPPED"
        self._await_publish()
        try:
            leftover = await asyncio.wait_for(self._handshake(), self.settings.handshake_timeout_s)
            messages = self.chunks.feed(leftover) if leftover else []
            while True:
                for msg in messages:
                    await self.dispatch(msg)
                await self.writer.drain()
                messages = self.chunks.feed(await self._read(self._read_timeout()))
                self._acknowledge()
        except TimeoutError:
            reason = "handshake timed out"
        except CloseConnection as exc:
            reason, dropped, ended, end_reason = str(exc), exc.dropped, exc.ended, exc.end_reason
        except ProtocolError as exc:
            reason = f"protocol error: {exc}"
        except (ConnectionError, OSError) as exc:
            reason = f"connection error: {exc}"
        finally:
            if self._deadline is not None:
                self._deadline.cancel()
            reason = self.close_reason or reason
            try:
                await self._finish(reason, dropped, ended, end_reason)
            finally:
                self.writer.close()  # whatever failed: the encoder sees the close and can reconnect
                log.info("rtmp %s %s: closed (%s)", self.id, self.peer, reason)

    async def _handshake(self) -> bytes:
        handshake = ServerHandshake()
        while not handshake.done:
            reply = handshake.feed(await self._read(self.settings.handshake_timeout_s))
            if reply:
                self.writer.write(reply)
                await self.writer.drain()
        return handshake.leftover

    def _read_timeout(self) -> float:
        # While publishing, silence for silent_after_s means the publisher is gone.
        if self.pipeline is not None:
            return min(self.settings.idle_timeout_s, self.settings.silent_after_s)
        return self.settings.idle_timeout_s

    def _acknowledge(self) -> None:
        received = self.chunks.bytes_received
        if received - self.acked >= self.settings.window_ack_size:
            self.acked = received
            self.send(chunk.acknowledgement(received & 0xFFFFFFFF))

    # -- dispatch -------------------------------------------------------------
    async def dispatch(self, msg: RtmpMessage) -> None:
        if not self.key_accepted:
            self.messages_before_publish += 1
            if self.messages_before_publish > MAX_MESSAGES_BEFORE_PUBLISH:
                raise ProtocolError(f"more than {MAX_MESSAGES_BEFORE_PUBLISH} messages before publish")
        if msg.type_id in (chunk.AUDIO, chunk.VIDEO):
            await self._media(msg)
        elif msg.type_id == chunk.COMMAND_AMF0:
            await self._command(commands.parse_command(msg))
        elif msg.type_id == chunk.COMMAND_AMF3:
            # An AMF3 command is AMF0 after a one-byte format marker (spec 7.1.1).
            body = RtmpMessage(msg.csid, chunk.COMMAND_AMF0, msg.timestamp, msg.stream_id, msg.payload[1:])
            await self._command(commands.parse_command(body))
        elif msg.type_id == chunk.DATA_AMF0:
            name, values = commands.parse_data(msg.payload)
            if name == "onMetaData" and values and isinstance(values[0], dict):
                self.metadata = {k: v for k, v in values[0].items() if isinstance(k, str)}
                if self.pipeline is not None:
                    self.pipeline.set_frame_rate(frame_rate(self.metadata))
        elif msg.type_id not in IGNORED_TYPES:
            raise ProtocolError(f"unsupported RTMP message type {msg.type_id}")

    async def _command(self, cmd: commands.Command) -> None:
        if cmd.name == "connect":
            await self._connect(cmd)
        elif cmd.name in ("releaseStream", "FCPublish"):
            self.send(commands.result(cmd.transaction_id))
            if cmd.name == "FCPublish":
                self.send(commands.on_fc_publish("publishing"))
        elif cmd.name == "createStream":
            self.send(commands.result(cmd.transaction_id, float(commands.PUBLISH_STREAM_ID)))
        elif cmd.name == "publish":
            await self._publish(cmd)
        elif cmd.name in ("FCUnpublish", "deleteStream", "closeStream"):
            if self.pipeline is not None:
                await self._finish("publisher stopped", dropped=False)
                self.send(commands.on_status(commands.PUBLISH_STREAM_ID, "status",
                                             "NetStream.Unpublish.Success", "Stopped publishing."))
                self._await_publish()  # it may publish again: a new deadline, and evictable meanwhile
        elif cmd.name in ("play", "play2"):
            self.send(commands.on_status(cmd.stream_id, "error", "NetStream.Play.Failed",
                                         "This server only accepts publishing; watch over HLS."))
            raise CloseConnection("play is not supported", dropped=False)
        # Other commands (getStreamLength, _checkbw, ...) need no answer from an ingest.

    async def _connect(self, cmd: commands.Command) -> None:
        obj = cmd.command_object if isinstance(cmd.command_object, dict) else {}
        app = str(obj.get("app", "")).strip("/").split("?", 1)[0]
        if app != self.settings.app:
            self.send(commands.connect_rejected(cmd.transaction_id, f"unknown application '{app}'"))
            raise CloseConnection(f"connect to unknown application {app!r}", dropped=False)
        self.send(chunk.window_ack_size(self.settings.window_ack_size),
                  chunk.set_peer_bandwidth(self.settings.window_ack_size, 2),
                  chunk.set_chunk_size(self.settings.chunk_size))
        self.out.set_chunk_size(self.settings.chunk_size)
        self.send(commands.connect_result(cmd.transaction_id))

    async def _publish(self, cmd: commands.Command) -> None:
        stream_id = cmd.stream_id or commands.PUBLISH_STREAM_ID
        key = commands.stream_name(cmd.args[0] if cmd.args else None)
        if self.pipeline is not None:
            raise ProtocolError("publish while already publishing")
        try:
            stream, resumed, gap_ms = await self._claim(stream_id, key)
        except VALKEY_ERRORS as exc:
            # The channel view is out of reach: refuse now (the encoder retries) rather than hang.
            self.send(commands.on_status(stream_id, "error", "NetStream.Publish.Rejected",
                                         "The ingest cannot check stream keys right now; try again shortly."))
            await self.writer.drain()
            raise CloseConnection(f"publish refused: Valkey unavailable ({exc!r})", dropped=False) from None
        self.last_media = time.monotonic()
        self.pipeline = StreamPipeline(
            stream, self.ctx.blobs, self.ctx.emit, queue_maxsize=self.settings.gop_queue_maxsize,
            max_gop_ms=int(self.settings.max_gop_s * 1000), discontinuity=resumed,
            clock=self.ctx.clock, reserve=self._write_lease, origin=self.ctx.origin,
            fps_hint=frame_rate(self.metadata))
        self.pipeline.on_stored = self.ctx.gop_latency_ms.append
        self.pipeline.start()
        self.ctx.sessions[self.id] = self
        if resumed:
            now = self.ctx.now_ms()
            await self.ctx.emit(events.stream_reconnected(stream, gap_ms, self.ctx.host, now), stream.channel_id)
            self.started_sent = True
        self.send(chunk.stream_begin(stream_id),
                  commands.on_status(stream_id, "status", "NetStream.Publish.Start", "Publishing."))
        log.info("rtmp %s %s: publishing channel %s as stream %s%s", self.id, self.peer, stream.channel_id,
                 stream.stream_id, f" (reconnect {stream.reconnects}, GOP {stream.next_seq})" if resumed else "")

    async def _refuse(self, stream_id: int, code: str, text: str, why: str) -> CloseConnection:
        self.send(commands.on_status(stream_id, "error", code, text))
        await self.writer.drain()
        return CloseConnection(why, dropped=False)

    async def _claim(self, stream_id: int, key: str | None) -> tuple[LiveStream, bool, int]:
        """Check the key and take the channel's lease: (stream, continues a parked one, gap ms)."""
        channel = await self.ctx.views.get_channel_by_key_hash(hash_stream_key(key)) if key else None
        if channel is None:
            raise await self._refuse(stream_id, "NetStream.Publish.BadName", "Invalid stream key.",
                                     "publish refused: unknown stream key")
        self.key_hash, self.key_seq = channel.stream_key_hash, channel.seq
        self._accept_key()
        # A stream its owner configured ahead (POST /v1/streams) becomes this broadcast.
        configured = await self.ctx.views.configured_stream_of(channel.id)
        self.meta = ((configured.title, configured.category, configured.tags) if configured is not None
                     else (channel.title, channel.category, channel.tags))
        now = self.ctx.now_ms()
        fresh = LiveStream(configured.id if configured is not None else str(uuid.uuid4()), channel.id, now)
        claim = await self.ctx.live.acquire(channel.id, self.id, fresh, now)
        if claim.kind == "busy" and claim.stream is not None and claim.stream.owner not in self.ctx.sessions \
                and 0 <= claim.stream.lease_until_ms - now <= self.ctx.live.lease_ms:
            # Its holder may have died a moment ago (an encoder reconnecting after an ingest
            # crash): a live holder renews, a dead one's lease lapses within one lease length.
            await asyncio.sleep((claim.stream.lease_until_ms - now) / 1000 + 0.1)
            claim = await self._acquire_again(channel.id, fresh)
        if claim.kind == "stale" and claim.stream is not None:
            # Parked past its grace window and not yet reaped: end it here, then go live anew.
            await self.ctx.end_unresumed(claim.stream)
            claim = await self._acquire_again(channel.id, fresh)
        if claim.kind not in ("new", "resume") or claim.stream is None:
            raise await self._refuse(stream_id, "NetStream.Publish.BadName",
                                     "This channel is already live from another encoder.",
                                     f"publish refused: channel {channel.id} is already live")
        self.channel_id, self.channel = channel.id, channel
        if claim.kind == "new":
            return claim.stream, False, 0
        held = claim.stream
        now = self.ctx.now_ms()
        if await self._ended_elsewhere(held.stream_id):
            # Its owner ended it while the publisher was away: this is a new broadcast.
            if not await self.ctx.live.replace(fresh, self.id, now):
                raise await self._refuse(stream_id, "NetStream.Publish.BadName",
                                         "This channel is already live from another encoder.",
                                         f"publish refused: lost channel {channel.id} while claiming it")
            return fresh, False, 0
        stream = await asyncio.to_thread(continue_after_stored, self.ctx.blobs, held)
        stream = replace(stream, reconnects=held.reconnects + 1, parked_at_ms=0)
        if not await self.ctx.live.renew(stream, self.id, now):
            raise await self._refuse(stream_id, "NetStream.Publish.BadName",
                                     "This channel is already live from another encoder.",
                                     f"publish refused: lost channel {channel.id} while claiming it")
        return stream, True, max(0, now - held.parked_at_ms)

    async def _acquire_again(self, channel_id: str, fresh: LiveStream) -> Claim:
        now = self.ctx.now_ms()
        return await self.ctx.live.acquire(channel_id, self.id, replace(fresh, started_at_ms=now), now)

    # -- the lease ------------------------------------------------------------------
    async def _write_lease(self, stream: LiveStream) -> bool:
        """Renew the lease with ``stream``; False only when another session holds it now.

        Valkey errors and timeouts are logged, not fatal: the session keeps the stream and
        the next renewal tries again (while the lease lapses, a reconnect elsewhere may take it).
        """
        if self.lost:
            return False
        try:
            held = await asyncio.wait_for(self.ctx.live.renew(stream, self.id, self.ctx.now_ms()),
                                          self.ctx.valkey_timeout_s)
        except VALKEY_ERRORS as exc:
            self.ctx.valkey_trouble("renewing the lease of stream " + stream.stream_id, exc)
            return True
        if not held:
            self.lost = True
            log.warning("rtmp %s: stream %s is held by another session now", self.id, stream.stream_id)
        return held

    async def renew_lease(self) -> None:
        """The server's lease timer: keep the stream while media arrives."""
        pipeline = self.pipeline
        if pipeline is None or self.lost:
            return
        if time.monotonic() - self.last_media > self.settings.silent_after_s:
            return  # a silent publisher loses the channel: its lease lapses, another encoder may take over
        if not await self._write_lease(pipeline.stream):
            pipeline.lost = True

    async def _media(self, msg: RtmpMessage) -> None:
        if self.pipeline is None:
            return  # media before publish carries no stream: nothing to attach it to
        if not msg.payload:
            return  # empty tags (some encoders send them) carry nothing
        self.last_media = time.monotonic()
        if self.lost or self.pipeline.lost:
            self.lost = True
            raise CloseConnection("another ingest session holds the stream now", dropped=False, ended=True)
        if msg.type_id not in self.checked_types:
            await self._check_codec(msg)
        await self.pipeline.push("video" if msg.type_id == chunk.VIDEO else "audio", msg.timestamp, msg.payload)
        # Announce at the first frame: the sequence headers and onMetaData come before it.
        if not self.started_sent and self.pipeline.frames:
            await self._announce()
        if self.started_sent and self.last_media - self.last_end_check > END_CHECK_S:
            self.last_end_check = self.last_media
            try:
                ended, rotated = await asyncio.wait_for(self._still_wanted(self.pipeline.stream.stream_id),
                                                        self.ctx.valkey_timeout_s)
            except VALKEY_ERRORS as exc:
                self.ctx.valkey_trouble("checking whether a stream ended", exc)
                ended = rotated = False
            if ended:
                self.send(commands.on_status(commands.PUBLISH_STREAM_ID, "status", "NetStream.Unpublish.Success",
                                             "The broadcaster ended this stream."))
                await self.writer.drain()
                raise CloseConnection("ended by its owner", dropped=False, ended=True)
            if rotated:
                self.send(commands.on_status(commands.PUBLISH_STREAM_ID, "error", "NetStream.Publish.BadName",
                                             "The stream key was rotated; publish with the new key."))
                await self.writer.drain()
                raise CloseConnection("stream key rotated", dropped=False, end_reason="KEY_ROTATED")

    async def _ended_elsewhere(self, stream_id: str) -> bool:
        """True once the stream view says the stream ended (its owner ended it through the API)."""
        view = await self.ctx.views.get_stream(stream_id)
        return view is not None and view.ended

    async def _still_wanted(self, stream_id: str) -> tuple[bool, bool]:
        """(ended by its owner, the key it publishes with was rotated), from the views."""
        ended = await self._ended_elsewhere(stream_id)
        channel = await self.ctx.views.get_channel(self.channel_id) if self.channel_id else None
        # Only a change applied after the key was accepted counts: while `rebuild-views` replays
        # the log, the view passes through older keys (lower offsets) and, for a moment, none.
        rotated = (channel is not None and channel.seq > self.key_seq
                   and channel.stream_key_hash != self.key_hash)
        return ended, rotated

    async def _check_codec(self, msg: RtmpMessage) -> None:
        """Refuse, with a status the encoder shows, a codec the platform cannot carry (HEVC, AV1, MP3...)."""
        try:
            tag = flv.parse_video(msg.payload) if msg.type_id == chunk.VIDEO else flv.parse_audio(msg.payload)
            flv.check_supported(tag)
        except UnsupportedCodecError as exc:
            self.send(commands.on_status(commands.PUBLISH_STREAM_ID, "error", "NetStream.Publish.Rejected",
                                         f"{exc}; publish H.264 video with AAC audio."))
            await self.writer.drain()
            raise CloseConnection(f"publish refused: {exc}", dropped=False) from None
        self.checked_types.add(msg.type_id)

    async def _announce(self) -> None:
        assert self.pipeline is not None
        self.started_sent = True
        p = self.pipeline
        assert self.channel is not None
        # Recorded before StreamStarted exists, so a crash from here on ends the stream, never loses it.
        p.stream = replace(p.stream, announced=True)
        if not await self._write_lease(p.stream):
            raise CloseConnection("another ingest session holds the stream now", dropped=False, ended=True)
        title, category, tags = self.meta
        await self.ctx.emit(events.stream_started(p.stream, title, category, self.ctx.host, self.metadata, p.tracks,
                                                  self.ctx.now_ms(), tags), p.stream.channel_id)

    def health(self) -> tuple[str, StreamHealth] | None:
        """(channel id, StreamHealth) for the health timer, if publishing."""
        if self.pipeline is None or not self.started_sent:
            return None
        return self.pipeline.stream.channel_id, self.pipeline.health_snapshot()

    # -- end --------------------------------------------------------------------
    async def _finish(self, reason: str, dropped: bool, ended: bool = False,
                      end_reason: StreamEndReason = "PUBLISHER_STOPPED") -> None:
        pipeline, self.pipeline = self.pipeline, None
        self.ctx.sessions.pop(self.id, None)
        if pipeline is None or self.channel_id is None:
            return
        self.channel_id = None
        if self.lost or pipeline.lost:
            pipeline.abort()  # another session continues the stream: store and announce nothing more
            return
        try:
            stream = await pipeline.close()
        except Exception:
            pipeline.abort()
            # The lease is left to lapse: the stream is then parked, and resumed or ended.
            log.exception("rtmp %s: closing stream %s failed", self.id, pipeline.stream.stream_id)
            return
        now = self.ctx.now_ms()
        live = self.ctx.live
        try:
            if not self.started_sent or ended:
                # Nothing was announced, or the stream's end is already in the log.
                await live.release(stream, self.id)
            elif dropped and self.settings.reconnect_grace_s > 0:
                await live.park(stream, self.id, now)  # a reaper ends it if nobody resumes it
                log.info("rtmp %s: stream %s parked for %.0f s (%s)", self.id, stream.stream_id,
                         self.settings.reconnect_grace_s, reason)
            else:
                await self._end(stream, now, end_reason)
        except VALKEY_ERRORS as exc:
            # The lease lapses by itself: the stream counts as parked, and is resumed or ended.
            self.ctx.valkey_trouble(f"letting go of stream {stream.stream_id} ({reason})", exc)

    async def _end(self, stream: LiveStream, now: int, reason: StreamEndReason = "PUBLISHER_STOPPED") -> None:
        """The publisher stopped (or lost its key): StreamEnded, marked ending first so a crash cannot lose it."""
        try:
            await self.ctx.live.begin_end(stream, self.id, now, reason)
        except VALKEY_ERRORS as exc:
            self.ctx.valkey_trouble(f"ending stream {stream.stream_id}", exc)
        await self.ctx.emit(events.stream_ended(stream, reason, now), stream.channel_id)
        await self.ctx.live.release(stream, self.id)
