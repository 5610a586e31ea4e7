"""Errors raised by the schemas package.

The tree::

    SchemaError (ValueError)
     ├── SchemaLoadError           a schema cannot be read or parsed (bad JSON, fastavro
     │    │                        rejects it, or a schema string is not a schema)
     │    └── SchemaConventionError  a .avsc breaks the house rules: file name, record
     │                             name and namespace disagree, or a record/field lacks a doc
     ├── IncompatibleSchemaError   a schema change breaks the required compatibility
     │                             (Avro 1.11.1 "Schema Resolution"); ``problems`` lists why
     └── SchemaHistoryError        the committed versions cannot be read (not a git
                                   checkout, git missing, git failed)

Every error is a ``ValueError`` so a caller validating input can catch one builtin,
as PyAV's ``InvalidDataError`` is.  Messages say what and where, e.g.
``channel/ChannelCreated.avsc: field 'tags' has no doc``.
"""

from __future__ import annotations

from collections.abc import Sequence


class SchemaError(ValueError):
    """Base class of every error raised by ``schemas``."""


class SchemaLoadError(SchemaError):
    """A schema file or string cannot be read or parsed."""


class SchemaConventionError(SchemaLoadError):
    """A ``.avsc`` file parses but breaks the schema conventions (docs/ARCHITECTURE.md, "Events")."""

    def __init__(self, path: str, problems: Sequence[str]) -> None:
        self.path = path
        self.problems = list(problems)
        super().__init__(f"{path}: " + "; ".join(self.problems))


class IncompatibleSchemaError(SchemaError):
    """A new schema cannot be used with the data of an old one."""

    def __init__(self, subject: str, problems: Sequence[str]) -> None:
        self.subject = subject
        self.problems = list(problems)
        super().__init__(f"{subject}: incompatible schema change: " + "; ".join(self.problems))


class SchemaHistoryError(SchemaError):
    """The history of the schema files cannot be read from git."""
