"""Errors raised by the RTMP ingest.

The tree::

    IngestError (Exception)
     └── ProtocolError (ValueError)   the peer sent bytes we cannot accept
          ├── HandshakeError          C0/C1/C2 are wrong (RTMP 1.0 section 5.2)
          ├── ChunkError              a chunk or protocol control message is malformed
          │                           or over a limit (RTMP 1.0 sections 5.3, 5.4)
          ├── Amf0Error               an AMF0 value is truncated, too deep or uses an
          │                           unsupported marker (AMF0 spec section 2)
          ├── FlvError                an FLV tag, file, AVC/AAC config or SPS is malformed
          │                           (FLV 10.1 annex E, ISO/IEC 14496-15, -3, H.264 7.3)
          └── UnsupportedCodecError   a recognised codec we do not ingest, e.g. HEVC or
                                      AV1 over Enhanced RTMP when we take H.264 + AAC

Every ``ProtocolError`` is also a ``ValueError``, as PyAV's ``InvalidDataError`` is,
so the server can end the one connection that sent it with a single ``except``.
Messages say what and where, e.g. ``AMF0 string truncated at offset 17``.
"""

from __future__ import annotations


class IngestError(Exception):
    """Base class of every error raised by ``media.ingest``."""


class ProtocolError(IngestError, ValueError):
    """Bytes from the peer break the RTMP, AMF0 or FLV rules or our limits."""


class HandshakeError(ProtocolError):
    """The RTMP handshake is malformed."""


class ChunkError(ProtocolError):
    """A chunk stream header, message or protocol control message is malformed."""


class Amf0Error(ProtocolError):
    """An AMF0 value cannot be decoded (or a Python value cannot be encoded)."""


class FlvError(ProtocolError):
    """An FLV tag body, FLV file or codec configuration record is malformed."""


class UnsupportedCodecError(ProtocolError):
    """The codec is recognised but not one we ingest."""
