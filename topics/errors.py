"""Errors raised by the topics package.

    TopicsError
    ├── SerializationError      a value does not fit its schema, or a record is
    │   │                       not Confluent-framed Avro (also a ValueError)
    │   └── UnknownRecordError  a record type no catalogue topic carries
    ├── RegistryError           the Schema Registry refused or could not be reached
    ├── DeliveryError           the broker did not acknowledge a produced record
    └── ArchiveError            an archive file or topics.json cannot be read (also a ValueError)
"""


class TopicsError(Exception):
    """Base of every topics error."""


class SerializationError(TopicsError, ValueError):
    """A value could not be encoded, or bytes could not be decoded."""


class UnknownRecordError(SerializationError, KeyError):
    """The record type is not in the catalogue (or not on that topic)."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class RegistryError(TopicsError):
    """The Schema Registry answered an error or was unreachable."""


class DeliveryError(TopicsError):
    """The broker did not acknowledge a record."""


class ArchiveError(TopicsError, ValueError):
    """An archive file or topics.json cannot be read (not a torn tail: that is recovered)."""
