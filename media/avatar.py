"""Avatar images: an uploaded PNG, JPEG, WebP or GIF in, a 256x256 JPEG out (PyAV, no other image library).

What comes in is hostile until decoded: the format is named from the file's
magic bytes and the demuxer is chosen by name, never probed (a probe would let
an "image" be an HLS playlist or a concat list that makes FFmpeg open other
files or URLs); its dimensions are read from the header and refused past
``MAX_SIDE`` before a pixel is decoded; only the first frame is decoded.  The
picture is centre-cropped to a square, scaled to ``SIZE`` and encoded as a
baseline JPEG, so what the platform stores and serves is always its own
re-encoding (no metadata, no second frame, no script).  Blocking: run it in a
thread, bounded by the caller.
"""

from __future__ import annotations

import io
from fractions import Fraction

import av
import av.error
import av.filter

SIZE = 256
MAX_SIDE = 4096  # 16 Mpx decoded at most: a 4096x4096 RGBA frame is 64 MiB
MAGIC: tuple[tuple[bytes, int, str, str], ...] = (  # (bytes, at offset, FFmpeg demuxer, MIME type)
    (b"\x89PNG\r\n\x1a\n", 0, "png_pipe", "image/png"),
    (b"\xff\xd8\xff", 0, "jpeg_pipe", "image/jpeg"),
    (b"GIF87a", 0, "gif", "image/gif"),
    (b"GIF89a", 0, "gif", "image/gif"),
    (b"WEBP", 8, "webp_pipe", "image/webp"),
)


class AvatarError(ValueError):
    """The upload is not an image this platform takes; the message says why (shown to the client)."""


def image_format(data: bytes) -> tuple[str, str] | None:
    """(FFmpeg demuxer, MIME type) named by the data's magic bytes, or None."""
    for magic, offset, demuxer, mime in MAGIC:
        if data[offset:offset + len(magic)] == magic and (demuxer != "webp_pipe" or data[:4] == b"RIFF"):
            return demuxer, mime
    return None


def make_avatar(data: bytes) -> bytes:
    """The 256x256 JPEG of an uploaded image; ``AvatarError`` for anything else."""
    found = image_format(data)
    if found is None:
        raise AvatarError("the file is not a PNG, JPEG, WebP or GIF image")
    demuxer, mime = found
    try:
        with av.open(io.BytesIO(data), mode="r", format=demuxer) as container:
            if not container.streams.video:
                raise AvatarError(f"the {mime} file holds no picture")
            stream = container.streams.video[0]
            width, height = stream.codec_context.width, stream.codec_context.height
            if not (0 < width <= MAX_SIDE and 0 < height <= MAX_SIDE):
                raise AvatarError(f"the image is {width}x{height}; at most {MAX_SIDE}x{MAX_SIDE} is taken")
            frame = next(container.decode(stream), None)
    except (av.error.FFmpegError, OSError) as exc:
        raise AvatarError(f"the {mime} image does not decode: {exc}") from None
    if frame is None:
        raise AvatarError(f"the {mime} image does not decode")
    return _encode(_square(frame))


def _square(frame: av.VideoFrame) -> av.VideoFrame:
    graph = av.filter.Graph()
    source = graph.add_buffer(width=frame.width, height=frame.height, format=frame.format,
                              time_base=Fraction(1, 1))
    chain = [graph.add("crop", r"min(iw\,ih):min(iw\,ih)"), graph.add("scale", f"{SIZE}:{SIZE}"),
             graph.add("format", "yuvj420p"), graph.add("buffersink")]
    source.link_to(chain[0])
    for a, b in zip(chain, chain[1:]):
        a.link_to(b)
    graph.configure()
    frame.pts = 0
    graph.push(frame)
    out = graph.pull()
    assert isinstance(out, av.VideoFrame)
    return out


def _encode(frame: av.VideoFrame) -> bytes:
    codec = av.CodecContext.create("mjpeg", "w")
    codec.width, codec.height, codec.pix_fmt = SIZE, SIZE, "yuvj420p"
    codec.time_base = Fraction(1, 1)
    frame.pts = 0
    packets = [*codec.encode(frame), *codec.encode(None)]
    return b"".join(bytes(p) for p in packets)
