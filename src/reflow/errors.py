"""One exception hierarchy for reflow.

Each edge translates it once: the API maps ``status`` to HTTP codes, the CLI maps it to
exit codes. Driver errors become these in the store (``raise ... from``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


class ReflowError(Exception):
    """Base of every error reflow raises on purpose; ``message`` is safe to show users."""

    status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidRequest(ReflowError):
    """The caller sent something reflow cannot accept (bad field, bad query)."""

    status = 422


class BadRequest(ReflowError):
    """The request is malformed at the protocol level (e.g. unknown API version)."""

    status = 400


class Unauthorized(ReflowError):
    """No API key, or one that is unknown or revoked."""

    status = 401

    def __init__(self, message: str = "Unauthorized") -> None:
        super().__init__(message)


class NotFound(ReflowError):
    """The thing does not exist for this team (another team's things are not found too)."""

    status = 404


class Conflict(ReflowError):
    """The request is valid but the thing is in a state that forbids it."""

    status = 409


class Gone(NotFound):
    """The thing existed but was deleted for good (a webhook of a deleted user)."""

    status = 410


class UnsupportedMediaType(BadRequest):
    """The body's Content-Type is not one the endpoint reads."""

    status = 415


class PayloadTooLarge(ReflowError):
    """The request body is over the configured limit."""

    status = 413


class SettingsError(ReflowError):
    """A REFLOW_* setting is missing or invalid; reflow refuses to start."""


@dataclass(frozen=True)
class Problem:
    """One validation problem: where (``blocks[2].with.url``) and why."""

    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}" if self.path else self.reason


class DefinitionInvalid(InvalidRequest):
    """A workflow definition failed validation; ``problems`` lists every one by path."""

    what = "workflow definition"  # what failed, for messages: "invalid <what>"

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = tuple(problems)
        listed = "; ".join(str(p) for p in self.problems)
        super().__init__(f"invalid {self.what}: {listed}")


class IntegrationInvalid(DefinitionInvalid):
    """An integration declaration failed validation; ``problems`` lists every one."""

    what = "integration declaration"


class AppInvalid(DefinitionInvalid):
    """An app declaration failed validation; ``problems`` lists every one by path."""

    what = "app declaration"


class CredentialInvalid(DefinitionInvalid):
    """A credential's values do not fit its app's fields; ``problems`` names each field
    (never a value)."""

    what = "credential"


class InstallationInvalid(DefinitionInvalid):
    """A headless installation's values are missing or do not fit their fields;
    ``problems`` names each field (never a secret value)."""

    what = "installation"


class ExpressionError(ReflowError):
    """A JSONata expression failed to compile or to evaluate (incl. ``$error()``)."""

    status = 422


class BlockFailed(ReflowError):
    """A block ran and failed; the step records ``message`` as its error."""

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


class StoreError(ReflowError):
    """The database failed in a way the caller cannot fix (driver errors wrap into this)."""

    status = 503


class LeaseLost(StoreError):
    """A running execution's write was refused: its lease belongs to another worker now.

    The worker that gets this stops running the execution and forgets it; the one that
    holds the lease resumes it from its last committed step (docs/architecture.md).
    """

    status = 409
