"""Shared fixtures: a migrated database, a running app, and factories that clean up.

Fixtures only; the constants they use (``TEST_KEY``, ``ORDER_SUMMARY``...) live in support.py.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from pg_support import postgres_url, pytest_terminal_summary, truncate
from reflow.api import create_app
from reflow.clock import ManualClock
from reflow.services import Reflow
from reflow.settings import Settings, load_settings
from reflow.store.migrate import upgrade
from response_models import checking_hooks
from support import API_VERSION, ORDER_SUMMARY, TEST_KEY, TEST_SECRET_KEY

# The session's PostgreSQL database, and the line saying when its tests were skipped.
__all__ = ["postgres_url", "pytest_terminal_summary"]


@pytest.fixture
def database_backend() -> str:
    """The backend of ``database_url``: SQLite, except where a folder's conftest
    parametrizes it (the API suite runs on both: tests/api/conftest.py)."""
    return "sqlite"


@pytest.fixture
def database_url(database_backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database for this test: a new SQLite file, or the session's PostgreSQL
    database (already migrated) emptied now."""
    if database_backend == "postgres":
        url: str = request.getfixturevalue("postgres_url")  # skips when none is configured
        truncate(url)
        return url
    return f"sqlite:///{tmp_path / 'reflow.db'}"


@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite database built by the migrations once per session; each test that needs
    an empty one gets a copy (migrating costs about 0.1 s, copying almost nothing)."""
    path = tmp_path_factory.mktemp("template") / "head.db"
    upgrade(f"sqlite:///{path}")
    return path


def migrate(settings: Settings, template: Path) -> None:
    """Bring the test's database to the schema's head: a new SQLite file is a copy of
    ``template``, an existing one is migrated (the PostgreSQL one already is)."""
    prefix = "sqlite:///"
    if not settings.database_url.startswith(prefix):
        return
    path = Path(settings.database_url.removeprefix(prefix))
    if path.exists():
        upgrade(settings.database_url)
        return
    shutil.copyfile(template, path)
    path.chmod(0o600)


@pytest.fixture
def make_settings(tmp_path: Path, database_url: str) -> Callable[..., Settings]:
    """Settings on the test's empty database (``database_url``), plus overrides."""

    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "database_url": database_url,
            "bootstrap_key": TEST_KEY,
            "secret_key": TEST_SECRET_KEY,
            "dev_key_file": tmp_path / "dev-key",
            "purge_interval": 3600,
            # The engine runs in this process: an executor process per test would cost
            # ~0.5 s each; tests/api/test_executor_processes.py runs the real thing.
            "executor_processes": 0,
        }
        values.update(overrides)
        return load_settings(**values)

    return make


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    """Default test settings."""
    return make_settings()


@pytest.fixture
def clock() -> ManualClock:
    """The clock of the app under test, at the real time until a test moves it."""
    return ManualClock()


@pytest.fixture
def reflow_client(
    settings: Settings, clock: ManualClock, migrated_sqlite: Path
) -> Iterator[tuple[Reflow, TestClient]]:
    """A migrated database, a started Reflow with its first team, and a client to its API.

    Its periodic jobs (purge, schedules, outbox) run on ``clock``: a test moves it with
    ``clock.advance`` and runs a job with ``reflow.periodic.run_once(name)``.
    """
    migrate(settings, migrated_sqlite)
    reflow = Reflow.open(settings, clock)
    app = create_app(reflow)
    headers = {"authorization": f"bearer {TEST_KEY}", "x-api-version": API_VERSION}
    with TestClient(app, headers=headers, raise_server_exceptions=False) as client:
        client.event_hooks = checking_hooks(app)
        client.portal.call(reflow.bootstrap)  # type: ignore[union-attr]
        yield reflow, client


@pytest.fixture
def client(reflow_client: tuple[Reflow, TestClient]) -> TestClient:
    """The API client (authenticated, versioned)."""
    return reflow_client[1]


@pytest.fixture
def reflow(reflow_client: tuple[Reflow, TestClient]) -> Reflow:
    """The Reflow behind ``client``."""
    return reflow_client[0]


@pytest.fixture
def make_user(client: TestClient) -> Callable[..., str]:
    """Create a user through the API; returns its userId."""
    counter = iter(range(1_000_000))

    def make(username: str | None = None, full_name: str | None = None) -> str:
        body: dict[str, Any] = {"username": username or f"user{next(counter)}@example.com"}
        if full_name is not None:
            body["fullName"] = full_name
        response = client.post("/users", json=body)
        assert response.status_code == 200, response.text
        user_id: str = response.json()["userId"]
        return user_id

    return make


@pytest.fixture
def make_workflow(client: TestClient) -> Callable[..., str]:
    """Create a workflow from a definition (a dict); returns its workflowId."""

    def make(definition: dict[str, Any] | None = None, **changes: Any) -> str:
        body = dict(definition or ORDER_SUMMARY)
        body.update(changes)
        response = client.post("/workflows", json=body)
        assert response.status_code == 200, response.text
        workflow_id: str = response.json()["workflowId"]
        return workflow_id

    return make


@pytest.fixture
def install_for_new_user(
    client: TestClient, make_user: Callable[..., str]
) -> Callable[..., str]:
    """Activate a workflow for a new user (``username`` or a generated one); returns its userId."""

    def install(workflow_id: str, username: str | None = None) -> str:
        user_id = make_user(username)
        response = client.put("/workflows/activate",
                              json={"userId": user_id, "workflowId": workflow_id})
        assert response.status_code == 200, response.text
        return user_id

    return install


@pytest.fixture
def installed(
    make_workflow: Callable[..., str], install_for_new_user: Callable[..., str]
) -> Callable[..., tuple[str, str]]:
    """A workflow activated for a new user; returns (workflowId, userId)."""

    def make(definition: dict[str, Any] | None = None, **changes: Any) -> tuple[str, str]:
        workflow_id = make_workflow(definition, **changes)
        return workflow_id, install_for_new_user(workflow_id)

    return make
