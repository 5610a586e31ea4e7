"""RTMP NetConnection/NetStream commands: parsing what a publisher sends, building our answers.

Pure functions over AMF0 values (RTMP spec 1.0 section 7.2; the onStatus codes
follow Adobe's NetStatusEvent reference, which OBS and ffmpeg read).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from media.ingest import amf0
from media.ingest.chunk import COMMAND_AMF0, RtmpMessage, command
from media.ingest.errors import ProtocolError

# Chunk stream ids by convention (ffmpeg, nginx-rtmp): 3 for NetConnection commands,
# 5 for NetStream status on the published stream.
CSID_COMMAND = 3
CSID_STATUS = 5
PUBLISH_STREAM_ID = 1
FMS_VERSION = "FMS/3,5,7,7009"


@dataclass(frozen=True)
class Command:
    """A decoded AMF0 command message: name, transaction id, command object, arguments."""

    name: str
    transaction_id: float
    command_object: Any
    args: tuple[Any, ...]
    stream_id: int


def parse_command(msg: RtmpMessage) -> Command:
    """Decode a command (type 20) message; ProtocolError if it is not name + transaction id."""
    if msg.type_id != COMMAND_AMF0:
        raise ProtocolError(f"message type {msg.type_id} is not an AMF0 command")
    values = amf0.decode_all(msg.payload)
    if len(values) < 2 or not isinstance(values[0], str) or not isinstance(values[1], (int, float)):
        raise ProtocolError("AMF0 command must start with a name and a transaction id")
    cmd_obj = values[2] if len(values) > 2 else None
    return Command(values[0], float(values[1]), cmd_obj, tuple(values[3:]), msg.stream_id)


def parse_data(payload: bytes) -> tuple[str, list[Any]]:
    """A data message (type 18): its handler name and values (``@setDataFrame`` unwrapped)."""
    values = amf0.decode_all(payload)
    if not values or not isinstance(values[0], str):
        raise ProtocolError("AMF0 data message must start with a handler name")
    if values[0] == "@setDataFrame" and len(values) >= 2 and isinstance(values[1], str):
        return values[1], list(values[2:])
    return values[0], list(values[1:])


def stream_name(raw: Any) -> str:
    """The stream key from a publish name: OBS and ffmpeg may append ``?query``."""
    if not isinstance(raw, str) or not raw:
        return ""
    return raw.split("?", 1)[0].strip()


def connect_result(transaction_id: float) -> RtmpMessage:
    return command(CSID_COMMAND, 0, "_result", transaction_id,
                   {"fmsVer": FMS_VERSION, "capabilities": 31.0, "mode": 1.0},
                   {"level": "status", "code": "NetConnection.Connect.Success",
                    "description": "Connection succeeded.", "objectEncoding": 0.0})


def connect_rejected(transaction_id: float, description: str) -> RtmpMessage:
    return command(CSID_COMMAND, 0, "_error", transaction_id, None,
                   {"level": "error", "code": "NetConnection.Connect.Rejected", "description": description})


def result(transaction_id: float, value: Any = None) -> RtmpMessage:
    """A plain ``_result`` (releaseStream, FCPublish, createStream's stream id)."""
    return command(CSID_COMMAND, 0, "_result", transaction_id, None, value)


def on_fc_publish(name: str) -> RtmpMessage:
    return command(CSID_COMMAND, 0, "onFCPublish", 0.0, None,
                   {"level": "status", "code": "NetStream.Publish.Start", "description": name})


def on_status(stream_id: int, level: str, code: str, description: str) -> RtmpMessage:
    """NetStream.onStatus: Publish.Start, Publish.BadName, Unpublish.Success..."""
    return command(CSID_STATUS, stream_id, "onStatus", 0.0, None,
                   {"level": level, "code": code, "description": description})
