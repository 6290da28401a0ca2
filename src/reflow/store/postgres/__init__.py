"""The PostgreSQL store (scale-out mode): an asyncpg pool shared by any number of workers.

Workers are fenced by their leases (``save_execution`` writes only under its owner's
lease) and claim fairly with ``FOR UPDATE SKIP LOCKED``. Execution writes are group
committed as in SqliteStore: those ready in the same event-loop turn share a transaction.
Hints (LISTEN/NOTIFY) are sent in the transactions that make them true; a dedicated
connection hears them for ``listen``.
"""

from __future__ import annotations

from reflow.store.postgres._base import (
    Q,
    Statement,
    _PostgresBase,
    connect_error,
    driver_url,
)
from reflow.store.postgres.apps import AppsMixin
from reflow.store.postgres.credentials import CredentialsMixin
from reflow.store.postgres.error_stream import ErrorStreamMixin
from reflow.store.postgres.executions import ExecutionsMixin
from reflow.store.postgres.installation_config import InstallationConfigMixin
from reflow.store.postgres.installations import InstallationsMixin
from reflow.store.postgres.integrations import IntegrationsMixin
from reflow.store.postgres.listener import CHANNELS, ListenerMixin
from reflow.store.postgres.log_search import LogSearchMixin
from reflow.store.postgres.oauth import OAuthMixin
from reflow.store.postgres.reruns import RerunsMixin
from reflow.store.postgres.retention import RetentionMixin
from reflow.store.postgres.schedules import SchedulesMixin
from reflow.store.postgres.teams import TeamsMixin
from reflow.store.postgres.users import UsersMixin
from reflow.store.postgres.waiting import WaitingMixin
from reflow.store.postgres.webhooks import WebhooksMixin
from reflow.store.postgres.workflows import WorkflowsMixin


class PostgresStore(
    TeamsMixin,
    UsersMixin,
    WorkflowsMixin,
    InstallationsMixin,
    ExecutionsMixin,
    ListenerMixin,
    WaitingMixin,
    RetentionMixin,
    ErrorStreamMixin,
    WebhooksMixin,
    IntegrationsMixin,
    SchedulesMixin,
    LogSearchMixin,
    AppsMixin,
    CredentialsMixin,
    OAuthMixin,
    InstallationConfigMixin,
    RerunsMixin,
    _PostgresBase,
):
    """The Store protocol on PostgreSQL through an asyncpg pool (opened on first use)."""


__all__ = ["CHANNELS", "PostgresStore", "Q", "Statement", "connect_error", "driver_url"]
