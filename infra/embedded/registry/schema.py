"""Schema parsing and identity: when two submitted schemas are "the same schema".

Confluent's registry gives one schema one id, so registering, looking up and
deduplicating all hinge on comparing a submitted schema with stored ones.  This
module validates an AVRO schema with fastavro, resolves its references (Confluent
schema references: named types defined by another subject's version) and computes
the ``identity`` string that the state machine in ``state.py`` compares.  It reads
no registry state itself: the caller passes a function that finds a reference's
parsed version, so the fold and its queries stay in ``state.py``.

The identity is not Avro's Parsing Canonical Form (Avro 1.11 specification,
"Parsing Canonical Form for Schemas"); see ``Candidate`` for why.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastavro.schema import parse_schema

from infra.embedded.registry.errors import InvalidSchema, InvalidVersion, SubjectNotFound, VersionNotFound


@dataclass(frozen=True)
class Reference:
    """A named type defined by another subject's version (Confluent schema references)."""

    name: str
    subject: str
    version: int

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "subject": self.subject, "version": self.version}

    @classmethod
    def from_json(cls, value: Any) -> Reference:
        try:
            return cls(str(value["name"]), str(value["subject"]), int(value["version"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidSchema(f"Invalid schema reference {value!r}") from exc


@dataclass(frozen=True, eq=False)
class Candidate:
    """A validated schema.  Equal ``identity`` means the same schema, so the same id.

    The identity is the parsed schema with full names, sorted keys and no whitespace.
    It keeps ``doc``, ``default`` and ``logicalType``: Avro's Parsing Canonical Form
    drops them, and would give ``long`` and ``timestamp-millis`` one id, so a reader
    fetching the writer schema by id would lose the logical type.
    """

    schema: str
    schema_type: str
    references: tuple[Reference, ...]
    identity: str
    resolved: Any  # the JSON schema, referenced types inlined: what compatibility checks read
    named: dict[str, Any]  # named types defined here, for schemas that reference this one


_SCHEMA_KEYS = ("type", "fields", "items", "values")  # where a schema nests schemas (defaults do not)


def _strip(node: Any) -> Any:
    """fastavro's parsed form without its private keys, ``{"type": "int"}`` as ``"int"``."""
    if isinstance(node, list):
        return [_strip(item) for item in node]
    if not isinstance(node, dict):
        return node
    clean = {k: _strip(v) if k in _SCHEMA_KEYS else v for k, v in node.items() if not k.startswith("__")}
    return clean["type"] if set(clean) == {"type"} and isinstance(clean["type"], str) else clean


def _define_once(node: Any, seen: set[str]) -> Any:
    """fastavro's expanded form repeats a named type at every use; Avro allows one definition."""
    if isinstance(node, list):
        return [_define_once(item, seen) for item in node]
    if not isinstance(node, dict):
        return node
    if node.get("type") in ("record", "error", "enum", "fixed") and isinstance(node.get("name"), str):
        if node["name"] in seen:
            return node["name"]
        seen.add(node["name"])
    return {k: _define_once(v, seen) if k in _SCHEMA_KEYS else v for k, v in node.items()}


def parse_candidate(schema: str, schema_type: str | None, references: tuple[Reference, ...],
                    resolve: Callable[[Reference], Candidate]) -> Candidate:
    """Validate a submitted schema; ``resolve`` finds the parsed version a reference names."""
    kind = (schema_type or "AVRO").upper()
    if kind != "AVRO":
        raise InvalidSchema(f"Invalid schema: schema type {kind} is not supported; "
                            "this registry stores AVRO schemas only")
    named: dict[str, Any] = {}
    for ref in references:
        try:
            named.update(resolve(ref).named)
        except (SubjectNotFound, VersionNotFound, InvalidVersion) as exc:
            raise InvalidSchema(f"Invalid schema: reference {ref.name!r} to {ref.subject!r} "
                                f"version {ref.version} not found") from exc
    try:
        obj = json.loads(schema)
        own = dict(named)
        parsed = parse_schema(obj, own)
        resolved = obj
        if references:
            resolved = _define_once(_strip(parse_schema(obj, dict(named), expand=True)), set())
    except Exception as exc:  # fastavro raises KeyError, TypeError, ... on bad schemas
        raise InvalidSchema(f"Invalid schema: {exc}") from exc
    identity = json.dumps(_strip(parsed), sort_keys=True, separators=(",", ":"))
    if references:
        identity += json.dumps([r.to_json() for r in references], separators=(",", ":"))
    return Candidate(schema, kind, tuple(references), identity, resolved, own)
