"""Data contracts: versioned Avro schemas, validation rules and the dead-letter queue."""

from contracts.dlq import DeadLetter, DeadLetterQueue
from contracts.validation import (
    DEVICES,
    EVENT_TYPES,
    KINDS,
    Kind,
    check,
    schema,
    validate,
    versions,
)

__all__ = [
    "DEVICES",
    "EVENT_TYPES",
    "KINDS",
    "DeadLetter",
    "DeadLetterQueue",
    "Kind",
    "check",
    "schema",
    "validate",
    "versions",
]
