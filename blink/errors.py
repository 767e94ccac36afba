"""One exception hierarchy for Blink. Each error knows its HTTP status and says how to fix it."""

from __future__ import annotations


class BlinkError(Exception):
    """Base of every error Blink raises on purpose."""

    status: int = 500

    def to_dict(self) -> dict[str, object]:
        return {"error": type(self).__name__, "message": str(self)}


class ConfigError(BlinkError):
    """Configuration is invalid: names the key and the fix."""


class SetupError(BlinkError):
    """A system dependency (Java, redis-server, an artifact) is missing."""

    status = 503


class BadRequest(BlinkError):
    """The request itself is invalid (bad id, k out of range...)."""

    status = 400


class NotFound(BlinkError):
    """The thing asked about does not exist (e.g. an item outside the model)."""

    status = 404


class Unauthorized(BlinkError):
    """A token is required (ingestion, admin) and was missing or wrong."""

    status = 401


class NotReady(BlinkError):
    """The service cannot answer yet (no model published, store down)."""

    status = 503


class ContractViolation(BlinkError):
    """A record does not satisfy its data contract."""

    status = 400

    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors


class DeadlineExceeded(BlinkError):
    """The model path ran past the request's deadline; the router answers from the fallback."""

    status = 504


class UnknownVersion(NotFound):
    """A model version asked for is not in the store."""


# Batch layer: a job stops with one of these, the DAG run fails, and the previously published
# version keeps serving.


class InsufficientData(BlinkError):
    """The data cannot support this step (too little history before a cut-off, no positives).

    The message names the window or setting to change.
    """

    status = 422


class DataQualityError(BlinkError):
    """A Great Expectations suite failed; the message lists the failed expectations and Data Docs."""

    status = 422


class GateFailed(BlinkError):
    """The new model is worse than the published one (or the best baseline): not published."""

    status = 409


class DatasetError(BlinkError):
    """An importer's input is missing or not in the layout it expects; the message says which."""

    status = 400
