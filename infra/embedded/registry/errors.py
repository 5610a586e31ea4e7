"""Errors raised by the embedded Schema Registry, one class per Confluent error code.

Each error carries the HTTP status and the ``error_code`` that Confluent's
Schema Registry answers with, so ``app.py`` turns any of them into the same
``{"error_code": N, "message": "..."}`` body a Confluent client expects
(Confluent Schema Registry API reference, "Errors").

The tree::

    RegistryError                       base; status_code 500, error_code 50001
    ├── SubjectNotFound                 404 / 40401
    ├── VersionNotFound                 404 / 40402
    ├── SchemaNotFound                  404 / 40403
    ├── SubjectSoftDeleted              404 / 40404  delete again with permanent=true
    ├── SubjectNotSoftDeleted           404 / 40405  permanent delete before a soft one
    ├── VersionSoftDeleted              404 / 40406
    ├── VersionNotSoftDeleted           404 / 40407
    ├── SubjectConfigNotFound           404 / 40408  no subject-level compatibility
    ├── IncompatibleSchema              409 / 409    ``messages`` lists why
    ├── BadRequest (ValueError)         400 / 400    the body is not the JSON asked for
    ├── InvalidSchema (ValueError)      422 / 42201
    ├── InvalidVersion (ValueError)     422 / 42202
    ├── InvalidCompatibilityLevel (ValueError)  422 / 42203
    └── StoreError                      500 / 50001  the Kafka topic could not be read or written
        └── StoreTimeout (TimeoutError) 500 / 50002
"""

from __future__ import annotations

from collections.abc import Sequence


class RegistryError(Exception):
    """Base of every registry error; also a 500 answer when raised as itself."""

    status_code = 500
    error_code = 50001

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class SubjectNotFound(RegistryError):
    status_code, error_code = 404, 40401

    def __init__(self, subject: str) -> None:
        super().__init__(f"Subject '{subject}' not found.")


class VersionNotFound(RegistryError):
    status_code, error_code = 404, 40402

    def __init__(self, subject: str, version: int | str) -> None:
        super().__init__(f"Version {version} not found for subject '{subject}'.")


class SchemaNotFound(RegistryError):
    status_code, error_code = 404, 40403

    def __init__(self, message: str = "Schema not found") -> None:
        super().__init__(message)


class SubjectSoftDeleted(RegistryError):
    status_code, error_code = 404, 40404

    def __init__(self, subject: str) -> None:
        super().__init__(f"Subject '{subject}' was soft deleted. Set permanent=true to delete permanently")


class SubjectNotSoftDeleted(RegistryError):
    status_code, error_code = 404, 40405

    def __init__(self, subject: str) -> None:
        super().__init__(f"Subject '{subject}' was not deleted first before being permanently deleted")


class VersionSoftDeleted(RegistryError):
    status_code, error_code = 404, 40406

    def __init__(self, subject: str, version: int) -> None:
        super().__init__(f"Subject '{subject}' Version {version} was soft deleted. "
                         "Set permanent=true to delete permanently")


class VersionNotSoftDeleted(RegistryError):
    status_code, error_code = 404, 40407

    def __init__(self, subject: str, version: int) -> None:
        super().__init__(f"Subject '{subject}' Version {version} was not deleted first "
                         "before being permanently deleted")


class SubjectConfigNotFound(RegistryError):
    status_code, error_code = 404, 40408

    def __init__(self, subject: str) -> None:
        super().__init__(f"Subject '{subject}' does not have subject-level compatibility configured")


class IncompatibleSchema(RegistryError):
    status_code, error_code = 409, 409

    def __init__(self, subject: str, messages: Sequence[str]) -> None:
        self.messages = list(messages)
        super().__init__(f"Schema being registered is incompatible with an earlier schema for subject "
                         f"'{subject}', details: " + "; ".join(self.messages))


class BadRequest(RegistryError, ValueError):
    status_code, error_code = 400, 400


class InvalidSchema(RegistryError, ValueError):
    status_code, error_code = 422, 42201


class InvalidVersion(RegistryError, ValueError):
    status_code, error_code = 422, 42202

    def __init__(self, version: object) -> None:
        super().__init__(f"The specified version '{version}' is not a valid version id. "
                         'Allowed values are between [1, 2^31-1] and the string "latest"')


class InvalidCompatibilityLevel(RegistryError, ValueError):
    status_code, error_code = 422, 42203

    def __init__(self, level: object) -> None:
        super().__init__(f"Invalid compatibility level {level!r}. Valid values are none, backward, forward, "
                         "full, backward_transitive, forward_transitive, and full_transitive")


class StoreError(RegistryError):
    """The ``_schemas`` topic could not be read or written; nothing was changed."""


class StoreTimeout(StoreError, TimeoutError):
    error_code = 50002
