"""Avro schema compatibility, decided by the schema-resolution rules.

Can data written with one schema (the *writer*) be read with another (the
*reader*)?  The answer follows the Avro 1.11.1 specification, "Schema
Resolution" (https://avro.apache.org/docs/1.11.1/specification/#schema-resolution):

- primitives match when equal or when the writer's type promotes to the
  reader's: int -> long, float, double; long -> float, double; float -> double;
  string <-> bytes;
- records, enums and fixed match by unqualified name, or by one of the reader's
  aliases; fixed sizes must agree;
- record fields match by name (or reader field alias); a writer field the
  reader lacks is skipped, a reader field the writer lacks needs a default;
- a writer enum symbol the reader lacks needs a reader enum default;
- every branch of a writer union must be readable by some reader branch, and
  a non-union writer must be readable by some branch of a reader union;
- arrays and maps compare their items and values;
- logical types are ignored: only the underlying types decide.

Recursive schemas are handled by assuming a (reader, writer) pair of named
types compatible while it is being compared.  Compatibility levels follow the
Confluent Schema Registry: BACKWARD means the new schema reads the old data,
FORWARD the reverse, FULL both; ``_TRANSITIVE`` compares with every old
version, otherwise only the latest.  The module is pure: no I/O.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, TypeAlias

from schemas.errors import SchemaError, SchemaLoadError

PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})
NAMED_KINDS = frozenset({"record", "error", "enum", "fixed"})
# Reader type -> writer types it may read (Avro 1.11.1, "Schema Resolution").
PROMOTIONS: dict[str, frozenset[str]] = {
    "long": frozenset({"int"}),
    "float": frozenset({"int", "long"}),
    "double": frozenset({"int", "long", "float"}),
    "string": frozenset({"bytes"}),
    "bytes": frozenset({"string"}),
}
LEVELS = ("NONE", "BACKWARD", "BACKWARD_TRANSITIVE", "FORWARD", "FORWARD_TRANSITIVE", "FULL", "FULL_TRANSITIVE")


@dataclass(frozen=True)
class _Ref:
    full_name: str


@dataclass(frozen=True)
class _Array:
    items: Node


@dataclass(frozen=True)
class _Map:
    values: Node


Node: TypeAlias = str | _Ref | _Array | _Map | list["Node"]


@dataclass
class _Field:
    name: str
    type: Node
    aliases: tuple[str, ...]
    has_default: bool


@dataclass
class _Named:
    kind: str
    full_name: str
    aliases: tuple[str, ...]
    fields: list[_Field] = field(default_factory=list)
    symbols: tuple[str, ...] = ()
    enum_default: str | None = None
    size: int | None = None


@dataclass
class _Schema:
    root: Node
    names: dict[str, _Named]


def _short(name: str) -> str:
    return name.rpartition(".")[2]


def _qualify(name: str, namespace: str) -> str:
    return name if "." in name or not namespace else f"{namespace}.{name}"


def _parse(schema: dict[str, Any] | str | list[Any]) -> _Schema:
    """Index a schema's named types and strip logical types, resolving names."""
    if isinstance(schema, str):
        try:
            schema = json.loads(schema)
        except json.JSONDecodeError as exc:
            if schema not in PRIMITIVES:
                raise SchemaLoadError(f"schema is neither JSON nor a primitive type name: {exc}") from exc
    names: dict[str, _Named] = {}
    return _Schema(_build(schema, "", names), names)


def _build(schema: Any, namespace: str, names: dict[str, _Named]) -> Node:
    if isinstance(schema, str):
        if schema in PRIMITIVES:
            return schema
        for candidate in (_qualify(schema, namespace), schema):
            if candidate in names:
                return _Ref(candidate)
        raise SchemaLoadError(f"unknown type {schema!r} (named types must be defined before use)")
    if isinstance(schema, list):
        return [_build(branch, namespace, names) for branch in schema]
    if not isinstance(schema, dict) or "type" not in schema:
        raise SchemaLoadError(f"not a schema: {schema!r}")
    kind = schema["type"]
    if not isinstance(kind, str):
        return _build(kind, namespace, names)  # {"type": {...}} or {"type": [...]}
    if kind in PRIMITIVES:
        return kind  # a logicalType annotation does not change the encoding
    if kind == "array":
        return _Array(_build(schema.get("items"), namespace, names))
    if kind == "map":
        return _Map(_build(schema.get("values"), namespace, names))
    if kind in NAMED_KINDS:
        return _build_named(schema, namespace, names)
    return _build(kind, namespace, names)  # {"type": "Name"}


def _build_named(schema: dict[str, Any], namespace: str, names: dict[str, _Named]) -> _Ref:
    name = schema.get("name")
    if not isinstance(name, str) or not name:
        raise SchemaLoadError(f"{schema['type']} without a name")
    own_ns = name.rpartition(".")[0] if "." in name else str(schema.get("namespace", namespace) or "")
    full = _qualify(name, own_ns)
    if full in names:
        raise SchemaLoadError(f"named type {full!r} is defined twice")
    named = _Named(schema["type"], full, tuple(_qualify(a, own_ns) for a in schema.get("aliases", [])))
    names[full] = named  # registered first, so a record may refer to itself
    if named.kind in ("record", "error"):
        for f in schema.get("fields", []):
            if not isinstance(f, dict) or not isinstance(f.get("name"), str) or "type" not in f:
                raise SchemaLoadError(f"record {full!r}: a field needs a name and a type, got {f!r}")
            aliases = tuple(f.get("aliases", []))
            named.fields.append(_Field(f["name"], _build(f["type"], own_ns, names), aliases, "default" in f))
    elif named.kind == "enum":
        named.symbols = tuple(schema.get("symbols", []))
        named.enum_default = schema.get("default")
    else:
        named.size = int(schema.get("size", -1))
    return _Ref(full)


class _Checker:
    def __init__(self, reader: _Schema, writer: _Schema, reader_label: str, writer_label: str) -> None:
        self.reader, self.writer = reader, writer
        self.rl, self.wl = reader_label, writer_label
        self.in_progress: set[tuple[str, str]] = set()

    def describe(self, node: Node, schema: _Schema) -> str:
        if isinstance(node, str):
            return node
        if isinstance(node, _Ref):
            return f"{schema.names[node.full_name].kind} {node.full_name}"
        if isinstance(node, _Array):
            return f"array<{self.describe(node.items, schema)}>"
        if isinstance(node, _Map):
            return f"map<{self.describe(node.values, schema)}>"
        return "union [" + ", ".join(self.describe(b, schema) for b in node) + "]"

    def matches(self, r: Node, w: Node) -> bool:
        """The shallow match the spec uses to pick a reader union branch."""
        if isinstance(r, str) and isinstance(w, str):
            return r == w or w in PROMOTIONS.get(r, frozenset())
        if isinstance(r, _Ref) and isinstance(w, _Ref):
            rn, wn = self.reader.names[r.full_name], self.writer.names[w.full_name]
            return rn.kind == wn.kind and _short(wn.full_name) in {_short(n) for n in (rn.full_name, *rn.aliases)}
        return type(r) is type(w) and not isinstance(r, list)

    def check(self, r: Node, w: Node, path: str) -> list[str]:
        if isinstance(w, list):
            return [p for branch in w for p in self.check(r, branch, path)]
        if isinstance(r, list):
            trials = [(branch, self.check(branch, w, path)) for branch in r]
            if any(not problems for _, problems in trials):
                return []
            for branch, problems in trials:
                if self.matches(branch, w):
                    return problems
            return [f"{path}: {self.wl} type {self.describe(w, self.writer)} matches no branch of "
                    f"the {self.rl} {self.describe(r, self.reader)}"]
        if not self.matches(r, w):
            return [f"{path}: {self.rl} type {self.describe(r, self.reader)} cannot read "
                    f"{self.wl} type {self.describe(w, self.writer)}"]
        if isinstance(r, _Array) and isinstance(w, _Array):
            return self.check(r.items, w.items, f"{path}[]")
        if isinstance(r, _Map) and isinstance(w, _Map):
            return self.check(r.values, w.values, f"{path}{{}}")
        if isinstance(r, _Ref) and isinstance(w, _Ref):
            return self.check_named(self.reader.names[r.full_name], self.writer.names[w.full_name], path)
        return []

    def check_named(self, r: _Named, w: _Named, path: str) -> list[str]:
        pair = (r.full_name, w.full_name)
        if pair in self.in_progress:
            return []  # recursive reference: assume compatible while the outer comparison decides
        self.in_progress.add(pair)
        try:
            if r.kind == "enum":
                missing = [s for s in w.symbols if s not in r.symbols]
                if missing and r.enum_default is None:
                    return [f"{path}: {self.wl} enum symbols {missing} are missing from the {self.rl} "
                            f"enum {r.full_name}, which has no default"]
                return []
            if r.kind == "fixed":
                if r.size != w.size:
                    return [f"{path}: {self.rl} fixed {r.full_name} has size {r.size}, "
                            f"{self.wl} fixed has size {w.size}"]
                return []
            return self.check_record(r, w, path)
        finally:
            self.in_progress.discard(pair)

    def check_record(self, r: _Named, w: _Named, path: str) -> list[str]:
        problems: list[str] = []
        writer_fields = {f.name: f for f in w.fields}
        for rf in r.fields:
            wf = next((writer_fields[n] for n in (rf.name, *rf.aliases) if n in writer_fields), None)
            where = f"{path}.{rf.name}"
            if wf is not None:
                problems.extend(self.check(rf.type, wf.type, where))
            elif not rf.has_default:
                problems.append(f"{where}: field in the {self.rl} schema has no default "
                                f"and is missing from the {self.wl} schema")
        return problems


def _check(reader: dict[str, Any] | str, writer: dict[str, Any] | str, rl: str, wl: str) -> list[str]:
    r, w = _parse(reader), _parse(writer)
    root = _short(r.root.full_name) if isinstance(r.root, _Ref) else "<root>"
    problems = _Checker(r, w, rl, wl).check(r.root, w.root, root)
    return list(dict.fromkeys(problems))  # a shared named type can report the same problem twice


def check_backward(new: dict[str, Any] | str, old: dict[str, Any] | str) -> list[str]:
    """Why the new schema (reader) cannot read data written with the old one; [] if it can."""
    return _check(new, old, "new", "old")


def check_forward(new: dict[str, Any] | str, old: dict[str, Any] | str) -> list[str]:
    """Why the old schema (reader) cannot read data written with the new one; [] if it can."""
    return _check(old, new, "old", "new")


def check_compatibility(new: dict[str, Any] | str, old_versions: list[Any], level: str) -> list[str]:
    """Problems with registering new after old_versions (oldest first) under a Confluent level."""
    mode = level.upper()
    if mode not in LEVELS:
        raise SchemaError(f"unknown compatibility level {level!r}; expected one of {', '.join(LEVELS)}")
    if mode == "NONE" or not old_versions:
        return []
    count = len(old_versions)
    indexes = range(count) if mode.endswith("_TRANSITIVE") else [count - 1]
    base = mode.removesuffix("_TRANSITIVE")
    problems: list[str] = []
    for index in indexes:
        old = old_versions[index]
        where = f"old version {index + 1} of {count}"
        if base in ("BACKWARD", "FULL"):
            problems += [f"BACKWARD against {where}: {p}" for p in check_backward(new, old)]
        if base in ("FORWARD", "FULL"):
            problems += [f"FORWARD against {where}: {p}" for p in check_forward(new, old)]
    return problems
