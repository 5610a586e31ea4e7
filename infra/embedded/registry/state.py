"""The Schema Registry as a pure state machine over Confluent's ``_schemas`` records.

Confluent's registry keeps all its state in one compacted topic and rebuilds it by
applying that topic from offset 0.  This module is the fold (``apply``), the queries,
and the commands (``plan_*``) that decide which records a request writes without
changing anything.  It does no I/O: ``store.py`` produces a plan's records, waits
for the broker's ack and only then applies them, so a live change and a replay take
the same path.

Records (Confluent ``io.confluent.kafka.schemaregistry.storage``), JSON key -> value::

    {"keytype":"SCHEMA","subject":"s","version":1,"magic":1}
        -> {"subject":"s","version":1,"id":7,"schema":"...","deleted":false}
           (+ "schemaType" when not AVRO, "references" when any); null: hard delete
    {"keytype":"CONFIG","subject":null|"s","magic":0} -> {"compatibilityLevel":"FULL"}; null: unset
    {"keytype":"DELETE_SUBJECT","subject":"s","magic":0} -> {"subject":"s","version":3}
        (soft-deletes every version of s up to 3)

MODE, NOOP and unknown key types are ignored.  Keys keep Confluent's field order and
no spaces, so one logical key is always the same bytes and compaction can keep only
its latest value.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import Any

from infra.embedded.registry.errors import (
    IncompatibleSchema,
    InvalidCompatibilityLevel,
    InvalidSchema,
    InvalidVersion,
    SchemaNotFound,
    SubjectConfigNotFound,
    SubjectNotFound,
    SubjectNotSoftDeleted,
    SubjectSoftDeleted,
    VersionNotFound,
    VersionNotSoftDeleted,
    VersionSoftDeleted,
)

# Reference and Candidate are re-exported: callers import them from here.
from infra.embedded.registry.schema import Candidate as Candidate
from infra.embedded.registry.schema import Reference as Reference
from infra.embedded.registry.schema import parse_candidate
from schemas.compat import check_compatibility
from schemas.errors import SchemaError

LEVELS = ("NONE", "BACKWARD", "BACKWARD_TRANSITIVE", "FORWARD", "FORWARD_TRANSITIVE",
          "FULL", "FULL_TRANSITIVE")
MAX_VERSION = 2**31 - 1  # versions are Java ints in Confluent's registry
_LATEST = -1


@dataclass(frozen=True)
class Record:
    """One ``_schemas`` record: a JSON key and a JSON value, or None for a tombstone."""

    key: dict[str, Any]
    value: dict[str, Any] | None

    def encode(self) -> tuple[bytes, bytes | None]:
        """The key and value bytes as Confluent writes them."""
        value = None if self.value is None else json.dumps(self.value, separators=(",", ":")).encode()
        return json.dumps(self.key, separators=(",", ":")).encode(), value


def decode_record(key: bytes, value: bytes | None) -> Record:
    """Parse a record read from the topic; ValueError if it is not JSON objects."""
    k = json.loads(key)
    v = None if value is None else json.loads(value)
    if not isinstance(k, dict) or not (v is None or isinstance(v, dict)):
        raise ValueError(f"not a registry record: key={key[:80]!r}")
    return Record(k, v)


def schema_key(subject: str, version: int) -> dict[str, Any]:
    return {"keytype": "SCHEMA", "subject": subject, "version": version, "magic": 1}


def config_key(subject: str | None) -> dict[str, Any]:
    return {"keytype": "CONFIG", "subject": subject, "magic": 0}


def delete_subject_key(subject: str) -> dict[str, Any]:
    return {"keytype": "DELETE_SUBJECT", "subject": subject, "magic": 0}


@dataclass(frozen=True)
class SchemaVersion:
    """One version of one subject, as the SCHEMA record's value holds it."""

    subject: str
    version: int
    id: int
    schema: str
    schema_type: str = "AVRO"
    references: tuple[Reference, ...] = ()
    deleted: bool = False

    def to_value(self) -> dict[str, Any]:
        value: dict[str, Any] = {"subject": self.subject, "version": self.version, "id": self.id}
        if self.schema_type != "AVRO":
            value["schemaType"] = self.schema_type
        if self.references:
            value["references"] = [r.to_json() for r in self.references]
        value.update(schema=self.schema, deleted=self.deleted)
        return value

    @classmethod
    def from_value(cls, value: dict[str, Any]) -> SchemaVersion:
        refs = tuple(Reference.from_json(r) for r in value.get("references") or ())
        return cls(str(value["subject"]), int(value["version"]), int(value["id"]), str(value["schema"]),
                   str(value.get("schemaType") or "AVRO"), refs, bool(value.get("deleted", False)))


def parse_version(spec: str | int) -> int:
    """A version id from a URL: 1..2^31-1, or "latest" / -1 as ``_LATEST``."""
    if spec in ("latest", "-1", _LATEST):
        return _LATEST
    try:
        version = int(spec)
    except ValueError:
        raise InvalidVersion(spec) from None
    if not 1 <= version <= MAX_VERSION:
        raise InvalidVersion(spec)
    return version


def parse_level(level: object) -> str:
    """A compatibility level, case-insensitive; InvalidCompatibilityLevel otherwise."""
    if not isinstance(level, str) or level.upper() not in LEVELS:
        raise InvalidCompatibilityLevel(level)
    return level.upper()


@dataclass
class RegistryState:
    """Subjects, versions, ids and compatibility config, folded from ``_schemas`` records."""

    default_level: str = "BACKWARD"
    global_level: str | None = None
    subject_levels: dict[str, str] = field(default_factory=dict)
    max_id: int = 0
    _subjects: dict[str, dict[int, SchemaVersion]] = field(default_factory=dict)
    _id_uses: dict[int, set[tuple[str, int]]] = field(default_factory=dict)
    _parsed: dict[int, Candidate] = field(default_factory=dict)

    # -- the fold ------------------------------------------------------------------

    def apply(self, record: Record) -> None:
        """Fold one record in; ValueError if a known key type has a malformed body."""
        key, value = record.key, record.value
        try:
            keytype, subject = key.get("keytype"), key.get("subject")
            if keytype == "SCHEMA":
                self._remove(str(subject), int(key["version"]))
                if value is not None:
                    self._put(SchemaVersion.from_value(value))
            elif keytype == "CONFIG":
                # Newer Confluent config values may carry other settings and no level.
                raw = None if value is None else value.get("compatibilityLevel")
                level = None if raw is None else parse_level(raw)
                if subject is None:
                    self.global_level = level
                elif level is None:
                    self.subject_levels.pop(str(subject), None)
                else:
                    self.subject_levels[str(subject)] = level
            elif keytype == "DELETE_SUBJECT" and value is not None:
                watermark = int(value["version"])
                versions = self._subjects.get(str(subject), {})
                for number, sv in versions.items():
                    if number <= watermark:
                        versions[number] = replace(sv, deleted=True)
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"malformed registry record {key!r}: {exc!r}") from exc

    def _put(self, sv: SchemaVersion) -> None:
        self._subjects.setdefault(sv.subject, {})[sv.version] = sv
        self._id_uses.setdefault(sv.id, set()).add((sv.subject, sv.version))
        self.max_id = max(self.max_id, sv.id)

    def _remove(self, subject: str, version: int) -> None:
        versions = self._subjects.get(subject, {})
        old = versions.pop(version, None)
        if old is not None:
            uses = self._id_uses.get(old.id, set())
            uses.discard((subject, version))
            if not uses:
                self._id_uses.pop(old.id, None)
        if not versions:
            self._subjects.pop(subject, None)

    # -- queries -------------------------------------------------------------------

    def subjects(self, deleted: bool = False, deleted_only: bool = False, prefix: str = "") -> list[str]:
        """Subject names; soft-deleted ones only when asked for."""
        names = []
        for name, versions in sorted(self._subjects.items()):
            live = any(not sv.deleted for sv in versions.values())
            if name.startswith(prefix) and (not live if deleted_only else live or deleted):
                names.append(name)
        return names

    def versions(self, subject: str, deleted: bool = False, deleted_only: bool = False) -> list[int]:
        """Version numbers of a subject; SubjectNotFound if it has none to show."""
        found = [v for v, sv in sorted(self._subjects.get(subject, {}).items())
                 if (sv.deleted if deleted_only else deleted or not sv.deleted)]
        if not found:
            raise SubjectNotFound(subject)
        return found

    def version(self, subject: str, spec: str | int, deleted: bool = False) -> SchemaVersion:
        """One version (or "latest") of a subject."""
        number = parse_version(spec)
        visible = {v: sv for v, sv in self._subjects.get(subject, {}).items() if deleted or not sv.deleted}
        if not visible:
            raise SubjectNotFound(subject)
        sv = visible[max(visible)] if number == _LATEST else visible.get(number)
        if sv is None:
            raise VersionNotFound(subject, spec)
        return sv

    def schema_by_id(self, schema_id: int) -> SchemaVersion:
        """Any version registered with this id (soft-deleted ones included)."""
        uses = self._id_uses.get(schema_id)
        if not uses:
            raise SchemaNotFound(f"Schema {schema_id} not found")
        subject, version = min(uses)
        return self._subjects[subject][version]

    def uses_of_id(self, schema_id: int, deleted: bool = False) -> list[SchemaVersion]:
        """Every (subject, version) registered with this id."""
        self.schema_by_id(schema_id)
        found = (self._subjects[s][v] for s, v in sorted(self._id_uses[schema_id]))
        return [sv for sv in found if deleted or not sv.deleted]

    def lookup(self, subject: str, candidate: Candidate, deleted: bool = False) -> SchemaVersion:
        """The newest version of ``subject`` holding this schema."""
        versions = [self.version(subject, v, deleted) for v in self.versions(subject, deleted)]
        for sv in reversed(versions):
            if self.parsed(sv).identity == candidate.identity:
                return sv
        raise SchemaNotFound()

    def level(self, subject: str | None = None) -> str:
        """The compatibility level that applies to ``subject`` (or globally)."""
        if subject is not None and subject in self.subject_levels:
            return self.subject_levels[subject]
        return self.global_level or self.default_level

    def config(self, subject: str | None, default_to_global: bool = False) -> str:
        """GET /config semantics: a subject without its own level is an error unless asked."""
        if subject is None or subject in self.subject_levels or default_to_global:
            return self.level(subject)
        raise SubjectConfigNotFound(subject)

    def parse(self, schema: str, schema_type: str | None = "AVRO",
              references: tuple[Reference, ...] = ()) -> Candidate:
        """Validate a submitted schema, resolving its references against this registry."""
        return parse_candidate(schema, schema_type, references,
                               lambda ref: self.parsed(self.version(ref.subject, ref.version, deleted=True)))

    def parsed(self, sv: SchemaVersion) -> Candidate:
        """The parsed form of a stored version, cached by id (an id's schema never changes)."""
        if sv.id not in self._parsed:
            try:
                self._parsed[sv.id] = self.parse(sv.schema, sv.schema_type, sv.references)
            except InvalidSchema:
                # Written by another tool, or its reference hard-deleted: it matches nothing.
                return Candidate(sv.schema, sv.schema_type, sv.references, f"!{sv.id}", sv.schema, {})
        return self._parsed[sv.id]

    def compatibility_problems(self, subject: str, candidate: Candidate,
                               spec: str | int | None = None) -> list[str]:
        """Why ``candidate`` may not follow ``subject`` (one version, or all per the level)."""
        if spec is None:
            previous = [self.version(subject, v) for v in self._live(subject)]
        elif parse_version(spec) == _LATEST and not self._live(subject):
            previous = []
        else:
            previous = [self.version(subject, spec)]
        try:
            return check_compatibility(candidate.resolved, [self.parsed(sv).resolved for sv in previous],
                                       self.level(subject))
        except SchemaError as exc:
            raise InvalidSchema(f"Invalid schema: {exc}") from exc

    def _live(self, subject: str) -> list[int]:
        return [v for v, sv in sorted(self._subjects.get(subject, {}).items()) if not sv.deleted]

    # -- commands: what to write; the caller applies the records once they are acked --

    def plan_register(self, subject: str, candidate: Candidate) -> tuple[int, list[Record]]:
        """The id ``candidate`` gets under ``subject``, and the records that register it."""
        for number in reversed(self._live(subject)):
            existing = self._subjects[subject][number]
            if self.parsed(existing).identity == candidate.identity:
                return existing.id, []
        problems = self.compatibility_problems(subject, candidate)
        if problems:
            raise IncompatibleSchema(subject, problems)
        schema_id, text = self.max_id + 1, candidate.schema
        for other in sorted(self._id_uses):
            stored = self.schema_by_id(other)
            if self.parsed(stored).identity == candidate.identity:
                # Confluent gives one schema one id across subjects.
                schema_id, text = other, stored.schema
                break
        version = max(self._subjects.get(subject, {0: None}).keys()) + 1
        sv = SchemaVersion(subject, version, schema_id, text, candidate.schema_type, candidate.references)
        return schema_id, [Record(schema_key(subject, version), sv.to_value())]

    def plan_delete_version(self, subject: str, spec: str | int,
                            permanent: bool = False) -> tuple[int, list[Record]]:
        """Soft-delete one version, or hard-delete one that was soft-deleted."""
        # A numbered version is found even when soft-deleted, to say so; "latest" means a live one.
        sv = self.version(subject, spec, deleted=permanent or parse_version(spec) != _LATEST)
        if not permanent:
            if sv.deleted:
                raise VersionSoftDeleted(subject, sv.version)
            return sv.version, [Record(schema_key(subject, sv.version), replace(sv, deleted=True).to_value())]
        if not sv.deleted:
            raise VersionNotSoftDeleted(subject, sv.version)
        return sv.version, [Record(schema_key(subject, sv.version), None)]

    def plan_delete_subject(self, subject: str, permanent: bool = False) -> tuple[list[int], list[Record]]:
        """Soft-delete a subject (and its config), or hard-delete a soft-deleted one."""
        every = sorted(self._subjects.get(subject, {}))
        if not every:
            raise SubjectNotFound(subject)
        live = self._live(subject)
        if permanent:
            if live:
                raise SubjectNotSoftDeleted(subject)
            return every, [Record(schema_key(subject, v), None) for v in every]
        if not live:
            raise SubjectSoftDeleted(subject)
        records = [Record(delete_subject_key(subject), {"subject": subject, "version": live[-1]})]
        if subject in self.subject_levels:
            records.append(Record(config_key(subject), None))
        return live, records

    def plan_set_config(self, subject: str | None, level: object) -> tuple[str, list[Record]]:
        """Set the compatibility level of a subject, or the global one."""
        checked = parse_level(level)
        return checked, [Record(config_key(subject), {"compatibilityLevel": checked})]

    def plan_delete_config(self, subject: str | None) -> tuple[str, list[Record]]:
        """Unset a level (the global one falls back to the default); answers the old level."""
        if subject is not None and subject not in self.subject_levels:
            raise SubjectNotFound(subject)
        return self.level(subject), [Record(config_key(subject), None)]
