"""The SQLite store (embedded mode): one connection, WAL, used from the event loop thread.

SQLite calls are short and made directly from async methods: no thread hop per query,
which is what keeps a run's overhead low. One process owns a database file for running
executions (``start_runner``); CLI reads and writes may share it meanwhile.
"""

from __future__ import annotations

from reflow.store.sqlite._base import (
    DEFAULT_WAL_LIMIT,
    PRIVATE_FILE_MODE,
    Q,
    _SqliteBase,
    check_folder,
    create_private,
)
from reflow.store.sqlite.apps import AppsMixin
from reflow.store.sqlite.credentials import CredentialsMixin
from reflow.store.sqlite.error_stream import ErrorStreamMixin
from reflow.store.sqlite.executions import ExecutionsMixin
from reflow.store.sqlite.installation_config import InstallationConfigMixin
from reflow.store.sqlite.installations import InstallationsMixin
from reflow.store.sqlite.integrations import IntegrationsMixin
from reflow.store.sqlite.log_search import LogSearchMixin
from reflow.store.sqlite.oauth import OAuthMixin
from reflow.store.sqlite.reruns import RerunsMixin
from reflow.store.sqlite.retention import RetentionMixin
from reflow.store.sqlite.schedules import SchedulesMixin
from reflow.store.sqlite.teams import TeamsMixin
from reflow.store.sqlite.users import UsersMixin
from reflow.store.sqlite.waiting import WaitingMixin
from reflow.store.sqlite.webhooks import WebhooksMixin
from reflow.store.sqlite.workflows import WorkflowsMixin


class SqliteStore(
    TeamsMixin,
    UsersMixin,
    WorkflowsMixin,
    InstallationsMixin,
    ExecutionsMixin,
    WaitingMixin,
    RetentionMixin,
    ErrorStreamMixin,
    IntegrationsMixin,
    WebhooksMixin,
    SchedulesMixin,
    LogSearchMixin,
    AppsMixin,
    CredentialsMixin,
    OAuthMixin,
    InstallationConfigMixin,
    RerunsMixin,
    _SqliteBase,
):
    """The Store protocol on one SQLite file."""


__all__ = ["DEFAULT_WAL_LIMIT", "PRIVATE_FILE_MODE", "Q", "SqliteStore", "check_folder",
           "create_private"]
