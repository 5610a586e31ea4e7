"""Consumer-group offsets across broker restarts: snapshot them while the broker runs, restore them at start.

The keeper (``infra/embedded/keeper.py``) owns one ``GroupOffsetsKeeper``.
After rehydration, and before it reports ready (so before any consumer that
waits for ready.json can join a group), ``restore`` sets every archived
group's offsets with AlterConsumerGroupOffsets, clamped to each partition's
end.  A client that reconnects to a restarted broker on a fixed port can join
its group first: the broker then refuses the restore for that group (unknown
member), which keeps the offsets it chose -- its reset policy, so it
reprocesses rather than skips.  While the broker
runs, ``poll`` snapshots every group's committed offsets each
``GLASSCAST_ARCHIVE_OFFSETS_INTERVAL_MS``; the drain calls ``snapshot`` once
more after the consumers have stopped.  The rules (what wins, why a restore
never skips a record) and the file are in ``topics/offsets_archive.py``.

Groups come from ListGroups plus every group of the last snapshot: ListGroups
can leave out a group whose offsets were only restored until a member commits
(seen with Tansu 0.6), and OffsetFetch answers for it all the same.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from typing import Any

from confluent_kafka import ConsumerGroupTopicPartitions, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient

from topics.errors import ArchiveError
from topics.offsets_archive import TP, GroupOffsets, OffsetsFile, clamp, merge

REQUEST_TIMEOUT_S = 5.0
RESTORE_RETRY_S = 0.2


class GroupOffsetsKeeper:
    """Snapshots and restores the committed offsets of every consumer group on one broker."""

    def __init__(self, bootstrap_servers: str, store: OffsetsFile, interval_s: float = 1.0,
                 logger: logging.Logger | None = None) -> None:
        self.store = store
        self.interval_s = interval_s
        self.log = logger or logging.getLogger(__name__)
        admin_config: dict[str, Any] = {"bootstrap.servers": bootstrap_servers, "logger": self.log}
        self.admin = AdminClient(admin_config)
        self.offsets: GroupOffsets = self._load()
        self.snapshots = 0
        self._next = time.monotonic() + interval_s

    def _load(self) -> GroupOffsets:
        """The last snapshot; a damaged file is set aside, and every group starts over (reprocessing, not skipping)."""
        try:
            return self.store.load()
        except ArchiveError as exc:
            aside = self.store.path.with_name(f"{self.store.path.name}.damaged")
            os.replace(self.store.path, aside)
            self.log.error("offsets: %s; moved to %s, consumer groups restart from their reset policy", exc, aside)
            return {}

    def restore(self, ends: Mapping[TP, int], timeout_s: float = 30.0) -> GroupOffsets:
        """Put every archived group's offsets on the broker, clamped to ``ends``; what was set.

        A group the broker refuses (it already has members: a client reconnected to a restarted
        broker before the restore, and chose its offsets) or that still fails after ``timeout_s``
        is logged and left to its reset policy: it reprocesses, which is safe, where failing here
        would keep the broker down.
        """
        wanted = clamp(self.offsets, ends)
        deadline = time.monotonic() + timeout_s
        pending: GroupOffsets = dict(wanted)
        failed: dict[str, str] = {}
        while pending:
            retry: GroupOffsets = {}
            for group, offsets in pending.items():
                error, retriable = self._alter(group, offsets)
                if error and retriable and time.monotonic() + RESTORE_RETRY_S < deadline:
                    retry[group] = offsets
                elif error:
                    failed[group] = error
            pending = retry
            if pending:
                time.sleep(RESTORE_RETRY_S)
        for group, error in sorted(failed.items()):
            self.log.error("offsets: group %s not restored, it starts from its reset policy: %s", group, error)
        restored = {g: o for g, o in wanted.items() if g not in failed}
        clamped = sum(1 for g, o in restored.items() for tp, off in o.items() if off < self.offsets[g][tp])
        self.offsets = wanted
        self.store.save(wanted)
        self.log.info("offsets: restored %d groups (%d partitions, %d clamped to the partition's end)",
                      len(restored), sum(len(o) for o in restored.values()), clamped)
        return restored

    def _alter(self, group: str, offsets: Mapping[TP, int]) -> tuple[str, bool]:
        """Set one group's offsets: (error message or '', whether trying again may help)."""
        request = [ConsumerGroupTopicPartitions(group, [TopicPartition(t, p, o) for (t, p), o in offsets.items()])]
        try:
            result = self.admin.alter_consumer_group_offsets(request, request_timeout=REQUEST_TIMEOUT_S)[group].result()
        except KafkaException as exc:
            return str(exc), True  # the request itself failed (timeout, coordinator not ready yet)
        errors = [tp.error for tp in result.topic_partitions or () if tp.error is not None]
        message = "; ".join(str(e) for e in errors[:3])
        # Unknown member (measured, Tansu 0.6) or group not empty: it has members, and nothing will change that.
        return message, bool(errors) and all(e.retriable() for e in errors)

    def observe(self) -> GroupOffsets:
        """Every group's committed offsets as the broker reports them now (groups it fails on are left out)."""
        listed = self.admin.list_consumer_groups(request_timeout=REQUEST_TIMEOUT_S).result()
        groups = {g.group_id for g in listed.valid} | set(self.offsets)
        futures = {g: self.admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(g)],
                                                             request_timeout=REQUEST_TIMEOUT_S)[g]
                   for g in sorted(groups)}
        observed: GroupOffsets = {}
        for group, fut in futures.items():
            try:
                result = fut.result()
            except KafkaException as exc:
                self.log.warning("offsets: cannot read group %s: %s", group, exc)
                continue
            observed[group] = {(tp.topic, tp.partition): tp.offset for tp in result.topic_partitions or ()
                               if tp.error is None}
        return observed

    def snapshot(self) -> bool:
        """Merge what the broker reports into the snapshot and write it if it changed; True when written."""
        self._next = time.monotonic() + self.interval_s
        try:
            observed = self.observe()
        except KafkaException as exc:
            self.log.warning("offsets: snapshot failed: %s", exc)
            return False
        merged = merge(self.offsets, observed)
        if merged == self.offsets:
            return False
        self.store.save(merged)
        self.offsets = merged
        self.snapshots += 1
        return True

    def poll(self) -> bool:
        """Snapshot when the interval has passed since the last one; True when a file was written."""
        return self.snapshot() if time.monotonic() >= self._next else False
