"""Imported by the transcode forkserver as it starts (``set_forkserver_preload``): it dies with its worker.

Importing this module arms ``PR_SET_PDEATHSIG`` in the importing process, so
it must be imported nowhere else: the media worker names it in
``set_forkserver_preload`` (media/transcode/worker.py) and nothing imports it.
The pool processes the forkserver forks arm their own in the pool's
initializer, since a forked child does not inherit the setting.
"""

from __future__ import annotations

from media.lifeline import die_with_parent

die_with_parent()
