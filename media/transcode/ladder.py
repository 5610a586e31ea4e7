"""The rendition ladder: a plain table plus a pure function of (audience, source) -> renditions.

docs/ARCHITECTURE.md ("Media pipeline") seeds a tiered ladder: passthrough only for a
handful of viewers, two renditions for a mid-sized audience, the full ladder
(source, 720p30, 480p30, 360p30, audio-only) for popular streams.  Nothing is
ever upscaled: a scaled rung must be strictly shorter than the source, and the
rung at the source height is the source itself, remuxed rather than re-encoded
(re-encoding at the same size would only lose quality and burn CPU).

The result feeds an HLS multivariant playlist (RFC 8216 section 4.3.4.2,
``EXT-X-STREAM-INF``) where every rendition shares the source timeline, so a
player can switch between them at any segment boundary.  This module is pure:
no settings object, no clock; tier thresholds are passed in.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

__all__ = ["AUDIO", "LADDER", "MODES", "SOURCE", "Rendition", "gop_kbps", "plan_ladder"]


@dataclass(frozen=True)
class Rendition:
    """One output of the ladder; ``None`` fields are unknown or not applicable (audio)."""

    name: str
    width: int | None
    height: int | None
    fps: float | None
    video_kbps: int | None
    passthrough: bool = False
    audio_only: bool = False


#: The source remuxed untouched (the "1080p60" rung for a 1080p60 publisher).
SOURCE = Rendition("source", None, None, None, None, passthrough=True)
#: The source's AAC, remuxed on its own (an RFC 8216 4.3.4.1 ``EXT-X-MEDIA`` audio rendition).
AUDIO = Rendition("audio", None, None, None, None, audio_only=True)
#: Scaled rungs, best first.  Widths are for 16:9; ``plan_ladder`` keeps the source's aspect.
LADDER: tuple[Rendition, ...] = (
    Rendition("720p30", 1280, 720, 30.0, 3000),
    Rendition("480p30", 854, 480, 30.0, 1500),
    Rendition("360p30", 640, 360, 30.0, 800),
)
MODES = ("passthrough", "tiered", "full")
MIN_RUNG_KBPS = 100  # the floor under a rung capped at a very low source bitrate


def _even(value: float) -> int:
    # 4:2:0 chroma is subsampled 2x2, so H.264 wants even luma dimensions.
    return max(2, round(value / 2) * 2)


def _scaled(rung: Rendition, source_width: int, source_height: int, source_fps: float | None,
            source_kbps: int | None) -> Rendition:
    assert rung.height is not None and rung.fps is not None and rung.video_kbps is not None
    width = _even(rung.height * source_width / source_height)
    # Never raise the frame rate: a 25 fps source stays 25 fps in every rung.
    fps = rung.fps if source_fps is None or source_fps <= 0 else min(rung.fps, source_fps)
    # Nor the bitrate: a smaller picture never needs more bits than the source spent on it.
    kbps = rung.video_kbps if not source_kbps else max(MIN_RUNG_KBPS, min(rung.video_kbps, source_kbps))
    return replace(rung, width=width, fps=fps, video_kbps=kbps)


def gop_kbps(byte_size: int, duration: int, time_base_num: int, time_base_den: int) -> int | None:
    """A GOP's bitrate (audio included) in kbit/s, from its GopAvailable fields; None when it has no duration."""
    seconds = duration * time_base_num / time_base_den if time_base_den else 0
    return int(byte_size * 8 / seconds / 1000) if seconds > 0 else None


def plan_ladder(mode: str, viewers: int, source_width: int, source_height: int, source_fps: float | None,
                tier_small: int = 10, tier_medium: int = 100, source_kbps: int | None = None) -> list[Rendition]:
    """The renditions to produce for a source of this size and bitrate and an audience of ``viewers``."""
    if mode not in MODES:
        raise ValueError(f"unknown ladder mode {mode!r} (expected one of {', '.join(MODES)})")
    if source_width <= 0 or source_height <= 0:
        raise ValueError(f"source size must be positive, got {source_width}x{source_height}")
    if not 0 <= tier_small <= tier_medium:
        raise ValueError(f"tiers must satisfy 0 <= tier_small <= tier_medium, got {tier_small}, {tier_medium}")
    source = replace(SOURCE, width=source_width, height=source_height,
                     fps=source_fps if source_fps and source_fps > 0 else None)
    scaled = [_scaled(r, source_width, source_height, source_fps, source_kbps)
              for r in LADDER if r.height is not None and r.height < source_height]
    if mode == "tiered" and viewers < tier_small:
        mode = "passthrough"
    elif mode == "tiered" and viewers < tier_medium:
        return [source, scaled[0] if scaled else AUDIO]
    if mode == "passthrough":
        return [source]
    return [source, *scaled, AUDIO]
