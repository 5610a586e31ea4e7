"""Load the Avro schema of every Glasscast event from the package's ``.avsc`` files.

One event, one file: ``schemas/<aggregate>/<EventName>.avsc`` holds the record
``glasscast.<aggregate>.<EventName>`` (docs/ARCHITECTURE.md, "Events": one event, one file).
The files ship as package data, so they are found through ``importlib.resources``
and never through the working directory.

Each schema is parsed with fastavro, and its Parsing Canonical Form and
fingerprints are computed as the Avro specification defines them
(https://avro.apache.org/docs/1.11.1/specification/#parsing-canonical-form-for-schemas
and #schema-fingerprints): the canonical form drops docs, defaults, aliases and
logical types, so two schemas with the same canonical form read and write the
same bytes.

The house rules are checked on load (``convention_problems``): the file name,
record name and namespace agree, every record, enum and field has a ``doc``, and
every event starts with ``event_id`` (uuid) and ``occurred_at`` (timestamp-millis).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from typing import Any

from fastavro.schema import fingerprint as _fingerprint
from fastavro.schema import parse_schema, to_parsing_canonical_form

from schemas.errors import SchemaConventionError, SchemaLoadError

SCHEMA_SUFFIX = ".avsc"
NAMESPACE_ROOT = "glasscast"
# Every event starts with these two fields, with these logical types.
ENVELOPE_FIELDS: tuple[tuple[str, str, str], ...] = (
    ("event_id", "string", "uuid"),
    ("occurred_at", "long", "timestamp-millis"),
)


@dataclass(frozen=True, eq=False)
class LoadedSchema:
    """One event schema: where it came from, its JSON and its fastavro form."""

    full_name: str
    path: str  # relative to the package, e.g. "channel/ChannelCreated.avsc"
    raw: dict[str, Any]
    parsed: dict[str, Any]

    @property
    def canonical(self) -> str:
        """The Parsing Canonical Form (Avro 1.11.1)."""
        return canonical_form(self.raw)

    @property
    def crc64(self) -> str:
        """The CRC-64-AVRO (Rabin) fingerprint of the canonical form, as hex."""
        return fingerprint(self.raw, "CRC-64-AVRO")

    @property
    def sha256(self) -> str:
        """The SHA-256 fingerprint of the canonical form, as hex."""
        return fingerprint(self.raw, "SHA-256")


def canonical_form(schema: dict[str, Any]) -> str:
    """The Parsing Canonical Form of a schema."""
    return str(to_parsing_canonical_form(schema))


def fingerprint(schema: dict[str, Any], algorithm: str = "CRC-64-AVRO") -> str:
    """Hex fingerprint of a schema's canonical form ('CRC-64-AVRO', 'SHA-256', 'MD5', ...)."""
    return str(_fingerprint(canonical_form(schema), algorithm))


def package_root() -> Traversable:
    """The directory the ``.avsc`` files ship in."""
    return resources.files("schemas")


def schema_path(full_name: str) -> str:
    """The package-relative file of a record: ``glasscast.a.B`` -> ``a/B.avsc``."""
    parts = full_name.split(".")
    if len(parts) != 3 or parts[0] != NAMESPACE_ROOT:
        raise SchemaLoadError(f"{full_name!r} is not a name of the form {NAMESPACE_ROOT}.<aggregate>.<Event>")
    return f"{parts[1]}/{parts[2]}{SCHEMA_SUFFIX}"


def schema_files(root: Traversable | None = None) -> list[str]:
    """Relative paths of every ``.avsc`` under root (default: the package), sorted."""
    base = package_root() if root is None else root
    found: list[str] = []

    def walk(node: Traversable, prefix: str) -> None:
        for child in node.iterdir():
            if child.is_dir() and not child.name.startswith((".", "__")):
                walk(child, f"{prefix}{child.name}/")
            elif child.is_file() and child.name.endswith(SCHEMA_SUFFIX):
                found.append(prefix + child.name)

    walk(base, "")
    return sorted(found)


def read_schema(path: str, root: Traversable | None = None) -> dict[str, Any]:
    """The JSON of one ``.avsc`` file, given its package-relative path."""
    node = package_root() if root is None else root
    for part in path.split("/"):
        node = node.joinpath(part)
    try:
        text = node.read_text(encoding="utf-8")
    except OSError as exc:
        raise SchemaLoadError(f"{path}: cannot read: {exc}") from exc
    return parse_json(text, path)


def parse_json(text: str, where: str) -> dict[str, Any]:
    """Decode schema JSON; the top level must be an object (a record)."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SchemaLoadError(f"{where}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from exc
    if not isinstance(value, dict):
        raise SchemaLoadError(f"{where}: top level must be a JSON object, got {type(value).__name__}")
    return value


def parse(raw: dict[str, Any], where: str) -> dict[str, Any]:
    """fastavro's parsed form of a schema, with its errors translated to ours."""
    try:
        parsed = parse_schema(raw, named_schemas={})
    except Exception as exc:  # fastavro raises SchemaParseError, UnknownType, KeyError...
        raise SchemaLoadError(f"{where}: not a valid Avro schema: {exc}") from exc
    if not isinstance(parsed, dict):
        raise SchemaLoadError(f"{where}: top level must be a record")
    return parsed


def convention_problems(raw: dict[str, Any], path: str) -> list[str]:
    """Every way a parsed ``.avsc`` breaks the house rules (empty when it keeps them)."""
    problems: list[str] = []
    parts = path.split("/")
    if len(parts) != 2 or not parts[1].endswith(SCHEMA_SUFFIX):
        return [f"expected <aggregate>/<EventName>{SCHEMA_SUFFIX}, got {path!r}"]
    aggregate, event = parts[0], parts[1][: -len(SCHEMA_SUFFIX)]
    if raw.get("type") != "record":
        problems.append(f"top level must be a record, got type {raw.get('type')!r}")
    if raw.get("name") != event:
        problems.append(f"record name {raw.get('name')!r} does not match file name {event!r}")
    if raw.get("namespace") != f"{NAMESPACE_ROOT}.{aggregate}":
        problems.append(f"namespace {raw.get('namespace')!r} should be '{NAMESPACE_ROOT}.{aggregate}'")
    problems.extend(_doc_problems(raw, str(raw.get("name"))))
    declared = raw.get("fields")
    fields: list[Any] = declared if isinstance(declared, list) else []
    for index, (name, avro_type, logical) in enumerate(ENVELOPE_FIELDS):
        field = fields[index] if index < len(fields) else {}
        ftype = field.get("type")
        if field.get("name") != name or not isinstance(ftype, dict) or (
            ftype.get("type"), ftype.get("logicalType")
        ) != (avro_type, logical):
            problems.append(f"field {index} must be {name!r} of type {avro_type} with logicalType {logical}")
    return problems


def _doc_problems(schema: Any, where: str) -> list[str]:
    """Records and enums need a doc, and so does every field, at any depth."""
    problems: list[str] = []
    if isinstance(schema, list):
        for branch in schema:
            problems.extend(_doc_problems(branch, where))
    elif isinstance(schema, dict):
        kind = schema.get("type")
        if kind in ("record", "error", "enum", "fixed") and not _has_doc(schema):
            problems.append(f"{kind} {schema.get('name')!r} at {where} has no doc")
        if kind in ("record", "error"):
            for field in schema.get("fields", []):
                path = f"{where}.{field.get('name')}"
                if not _has_doc(field):
                    problems.append(f"field {path!r} has no doc")
                problems.extend(_doc_problems(field.get("type"), path))
        elif kind == "array":
            problems.extend(_doc_problems(schema.get("items"), f"{where}[]"))
        elif kind == "map":
            problems.extend(_doc_problems(schema.get("values"), f"{where}{{}}"))
    return problems


def _has_doc(node: dict[str, Any]) -> bool:
    doc = node.get("doc")
    return isinstance(doc, str) and bool(doc.strip())


def load_schema(full_name: str, root: Traversable | None = None) -> LoadedSchema:
    """Load, check and parse the schema of one record full name."""
    return _load(schema_path(full_name), root)


def load_schemas(root: Traversable | None = None) -> dict[str, LoadedSchema]:
    """Every schema under root (default: the package), by record full name."""
    loaded: dict[str, LoadedSchema] = {}
    for path in schema_files(root):
        schema = _load(path, root)
        if schema.full_name in loaded:
            other = loaded[schema.full_name].path
            raise SchemaLoadError(f"{path}: record {schema.full_name} is already defined in {other}")
        loaded[schema.full_name] = schema
    return loaded


def _load(path: str, root: Traversable | None) -> LoadedSchema:
    raw = read_schema(path, root)
    parsed = parse(raw, path)  # first, so the convention check walks a well-formed schema
    problems = convention_problems(raw, path)
    if problems:
        raise SchemaConventionError(path, problems)
    return LoadedSchema(full_name=f"{raw['namespace']}.{raw['name']}", path=path, raw=raw, parsed=parsed)
