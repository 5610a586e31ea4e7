"""Errors raised by the infra package.

    InfraError
    ├── SettingsError        a GLASSCAST_* value is missing, unknown or malformed
    ├── ServiceError         an embedded service failed to start or stop
    │   └── ServiceTimeout   it did not become ready in time
    └── RehydrateError       the broker could not be refilled from the archive exactly
"""


class InfraError(Exception):
    """Base of every infra error."""


class SettingsError(InfraError, ValueError):
    """A setting is unknown or has a bad value; the message names the variable."""


class ServiceError(InfraError, RuntimeError):
    """An embedded service failed."""


class ServiceTimeout(ServiceError, TimeoutError):
    """An embedded service did not become ready in time."""


class RehydrateError(InfraError, RuntimeError):
    """The broker could not be rebuilt from the archive with the original offsets."""
