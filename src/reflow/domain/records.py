"""The records of a team's catalogue: teams, keys, users, integrations, workflows, versions,
installations."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Team:
    """A tenant: one SaaS product, owning keys, users and workflows."""

    id: str
    name: str
    created_at: int
    log_retention: float | None = None  # seconds; None means the settings' default


@dataclass(frozen=True, slots=True)
class ApiKey:
    """An API key: only its hash and a display prefix are stored."""

    id: str
    team_id: str
    name: str
    prefix: str
    created_at: int
    revoked_at: int | None = None


@dataclass(frozen=True, slots=True)
class User:
    """An end user of the team's product."""

    id: str
    team_id: str
    username: str
    full_name: str | None
    created_at: int


@dataclass(frozen=True, slots=True)
class Workflow:
    """A parent workflow: a name and its latest version number."""

    id: str
    team_id: str
    name: str
    integration: str | None
    latest_version: int
    created_at: int
    updated_at: int


@dataclass(frozen=True, slots=True)
class Integration:
    """What a team's workflows integrate with: declared from a file or ``POST /integrations``
    (or made with the defaults by the first workflow naming it), found by id or name."""

    id: str
    team_id: str
    name: str
    app: str  # the app it connects to (the reference's primaryConnector); the name by default
    description: str
    icon: str | None  # an http(s) URL
    created_at: int
    updated_at: int


@dataclass(frozen=True, slots=True)
class WorkflowVersion:
    """One immutable version of a workflow: its canonical JSON definition."""

    workflow_id: str
    version: int
    definition: bytes
    digest: str
    created_at: int


@dataclass(frozen=True, slots=True)
class Installation:
    """A user's copy of a workflow, pinned to a version."""

    id: str
    team_id: str
    workflow_id: str
    user_id: str
    installed_version: int
    active: bool
    installed_at: int
    updated_at: int


@dataclass(frozen=True, slots=True)
class HeadlessInstallation:
    """A headless installation started for a user and an integration (docs/api.md
    "Headless installation"): the parent workflows it installs and the credential to pin
    per app. Its id is the user's installation id of the integration (GET /installations)."""

    id: str
    team_id: str
    user_id: str
    integration_id: str
    workflow_ids: tuple[str, ...]
    credential_ids: dict[str, str]  # app name -> credential id
    created_at: int
    updated_at: int


@dataclass(frozen=True, slots=True)
class InstallationSettings:
    """What a user set on one installation: configured values as stored (a JSON object,
    secret values sealed; None when nothing is set) and the credential ids it is pinned to."""

    config: bytes | None
    credential_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ConfigChange:
    """One installation's new settings, written with the others of a completion at once."""

    installation_id: str
    installed_version: int  # a completion installs the workflow's latest version
    config: bytes | None
    credential_ids: tuple[str, ...]
    activate: bool
