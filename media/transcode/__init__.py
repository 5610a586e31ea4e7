"""Transcoding: the ladder policy and the per-GOP job a media worker runs in a process pool."""

from media.transcode.encoders import X264Settings
from media.transcode.job import RenditionOutput, transcode_gop
from media.transcode.ladder import AUDIO, LADDER, SOURCE, Rendition, plan_ladder

__all__ = ["AUDIO", "LADDER", "SOURCE", "Rendition", "RenditionOutput", "X264Settings", "plan_ladder",
           "transcode_gop"]
