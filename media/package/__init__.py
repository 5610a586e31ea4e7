"""Packaging: fragmented MP4 (CMAF-style) init and media segments, and RFC 6381 codec strings."""
