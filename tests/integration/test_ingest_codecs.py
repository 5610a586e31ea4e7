"""Codecs the platform cannot carry are refused at publish with a status the encoder can show."""

from __future__ import annotations

import asyncio
import os
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from infra.settings import Settings
from media.ingest import amf0
from media.ingest.chunk import AUDIO, VIDEO, ChunkReader, ChunkWriter, RtmpMessage, command
from media.ingest.live import LiveStream
from tests.integration.ingest_support import ingest_settings, running_ingest

pytestmark = pytest.mark.integration

HEVC_SEQUENCE_START = bytes([0x80 | 0x10 | 0x00]) + b"hvc1" + b"\x01" * 23  # Enhanced RTMP ExVideoTagHeader
MP3_FRAME = bytes([0x2F]) + b"\xff\xfb\x90\x00" + b"\x00" * 100  # SoundFormat 2 = MP3


async def _publish_then_send(port: int, key: str, media: RtmpMessage) -> list[Any]:
    """A minimal RTMP publisher: returns every onStatus info object the server sent before closing."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"\x03" + struct.pack(">II", 0, 0) + os.urandom(1528))
    s0s1s2 = await reader.readexactly(3073)
    writer.write(s0s1s2[1:1537])
    out = ChunkWriter()
    for msg in (command(3, 0, "connect", 1.0, {"app": "live", "tcUrl": f"rtmp://127.0.0.1:{port}/live"}),
                command(3, 0, "createStream", 2.0, None),
                command(5, 1, "publish", 3.0, None, key, "live"), media):
        writer.write(out.encode(msg))
    await writer.drain()
    chunks = ChunkReader()
    statuses = []
    while data := await asyncio.wait_for(reader.read(65536), 10):
        for msg in chunks.feed(data):
            if msg.type_id == 1:  # the server's SET_CHUNK_SIZE is applied by the reader
                continue
            if msg.type_id == 20:
                values = amf0.decode_all(msg.payload)
                if values[0] == "onStatus":
                    statuses.append(values[3])
    writer.close()
    return statuses


@pytest.mark.parametrize("media, needle", [
    (RtmpMessage(6, VIDEO, 0, 1, HEVC_SEQUENCE_START), "video codec 'hevc' is not supported"),
    (RtmpMessage(4, AUDIO, 0, 1, MP3_FRAME), "audio codec 'mp3' is not supported"),
])
async def test_unsupported_codec_is_refused(settings_factory: Callable[..., Settings], tmp_path: Path,
                                            media: RtmpMessage, needle: str) -> None:
    s = ingest_settings(settings_factory())
    async with running_ingest(s) as ingest:
        channel_id, key = await ingest.channel()
        statuses = await _publish_then_send(ingest.server.port, key, media)
        codes = [st["code"] for st in statuses]
        assert codes == ["NetStream.Publish.Start", "NetStream.Publish.Rejected"], statuses
        assert needle in statuses[-1]["description"]
        assert await asyncio.to_thread(ingest.events, "stream.lifecycle", channel_id) == []
        # The channel is free again: nothing holds it live.
        now = ingest.server.ctx.now_ms()
        claim = await ingest.server.ctx.live.acquire(channel_id, "probe", LiveStream("probe", channel_id, now), now)
        assert claim.kind == "new"
