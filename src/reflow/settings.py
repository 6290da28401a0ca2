"""One typed Settings object, read from REFLOW_* environment variables once at start."""

from __future__ import annotations

import ipaddress
import os
import re
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from pydantic_settings import SettingsError as PydanticSettingsError

from reflow.domain.durations import parse_duration
from reflow.errors import SettingsError
from reflow.sealing import keyring

if TYPE_CHECKING:
    from cryptography.fernet import MultiFernet

KIB = 1024
SUPPORTED_API_VERSIONS = ("2023-12", "2024-03", "2025-09")
CURRENT_API_VERSION = "2025-09"


class Environment(StrEnum):
    """Where reflow runs: dev relaxes checks that protect a production deployment."""

    DEV = "dev"
    PRODUCTION = "production"


def _size(value: Any) -> int:
    if isinstance(value, int):
        return value
    text = str(value).strip().lower().replace(" ", "")
    for suffix, factor in (("kib", KIB), ("mib", KIB * KIB), ("gib", KIB**3), ("kb", 1000),
                           ("mb", 1000_000), ("gb", 1000**3)):
        if text.endswith(suffix):
            return int(float(text[: -len(suffix)]) * factor)
    return int(text.removesuffix("b"))


class Settings(BaseSettings):
    """Every knob reflow has; each field is the REFLOW_<NAME> environment variable."""

    model_config = SettingsConfigDict(env_prefix="REFLOW_", extra="ignore", frozen=True)

    env: Environment = Environment.PRODUCTION
    database_url: str = "sqlite:///./reflow.db"
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=1, le=65535)
    bootstrap_key: SecretStr | None = None
    # OAuth apps' client ids and secrets: the REFLOW_OAUTH_* variables, the only part of
    # the environment an app declaration's {env: NAME} may name, so that a team's
    # declaration cannot send the deployment's other settings (its secret key, its
    # database password) to a token URL it chose (docs/credentials.md).
    oauth_env: dict[str, SecretStr] = Field(default_factory=lambda: _oauth_environment())
    # Where `serve` keeps the first team's key so a second start can print it again (dev).
    dev_key_file: Path = Path(".reflow-dev-key")
    # Fernet keys that encrypt users' credentials and the secret fields of trigger payloads
    # (and the error stream's signing secret), comma-separated,
    # newest first (docs/security.md). Production refuses to serve without it.
    secret_key: SecretStr | None = None
    log_retention: float = Field(default=parse_duration("7d"), gt=0)
    # How long a user token (GET /users/{userId}/token) is valid (docs/tokens.md).
    user_token_ttl: float = Field(default=parse_duration("1h"), gt=0)
    step_output_cap: int = Field(default=256 * KIB, ge=1024)
    max_body_bytes: int = Field(default=10 * KIB * KIB, ge=1024)
    execution_timeout: float = Field(default=parse_duration("1h"), gt=0)
    lease_seconds: float = Field(default=30.0, ge=1)
    worker_concurrency: int = Field(default=64, ge=1, le=10_000)
    # Executor processes that run the engine (0: in this process, without crash isolation).
    executor_processes: int = Field(default=1, ge=0, le=64)
    # Address-space limit of each executor process (RLIMIT_AS); 0 for none.
    executor_memory_limit: int = Field(default=2 * KIB * KIB * KIB, ge=0)
    # An executor silent this long (stuck in one evaluation) is killed: above any legitimate
    # synchronous work (an expression's budget is 1 s), below other blocks' timeouts.
    executor_hang_timeout: float = Field(default=5.0, gt=0)
    # How often an execution is resumed after the process running it died, before it fails.
    max_resumes: int = Field(default=2, ge=0, le=100)
    purge_interval: float = Field(default=60.0, gt=0)
    # How often each process's scheduler looks for due schedule triggers (and for
    # installations changed since): the most a due time waits (docs/schedules.md).
    scheduler_interval: float = Field(default=5.0, ge=0.1, le=60)
    # How often an idle worker looks for queued executions when no hint woke it: the most
    # a lost PostgreSQL notification can delay a run.
    worker_poll_interval: float = Field(default=1.0, gt=0, le=60)
    # SIGTERM: how long running executions may finish before they are checkpointed and
    # their leases released (docs/deploy.md).
    shutdown_grace: float = Field(default=10.0, ge=0)
    # Where `reflow worker` serves /healthz, /readyz and /metrics (on REFLOW_HOST); none
    # when unset (a worker has no API).
    worker_metrics_port: int | None = Field(default=None, ge=1, le=65535)
    # PostgreSQL connections per process (the pool's maximum; a listener takes one more).
    database_pool_size: int = Field(default=8, ge=1, le=1000)
    http_timeout: float = Field(default=30.0, gt=0)
    # The error stream (docs/api.md "Error streaming"): one POST's whole time, POSTs in
    # flight per process, how often each process looks for due notifications (a failure
    # committed in the process wakes it at once), and how long a notification is retried.
    error_stream_timeout: float = Field(default=10.0, gt=0, le=300)
    error_stream_concurrency: int = Field(default=8, ge=1, le=1000)
    error_stream_interval: float = Field(default=5.0, gt=0, le=3600)
    error_stream_max_age: float = Field(default=parse_duration("24h"), gt=0)
    # Bulk rerun jobs (docs/api.md "Bulk rerun"): reruns per second one process starts at
    # most, in batches of a tenth of that; new runs go first whatever the rate.
    rerun_rate: float = Field(default=1200.0, ge=1, le=100_000)
    http_allow_networks: Annotated[
        tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...], NoDecode
    ] = ()
    # Outgoing connections per team, per (team, host:port), and how many teams keep an
    # open client (docs/http.md).
    http_team_connections: int = Field(default=32, ge=1, le=10_000)
    http_host_connections: int = Field(default=16, ge=1, le=10_000)
    http_team_clients: int = Field(default=64, ge=1, le=100_000)
    # Values every expression sees as `env` (a JSON object), e.g. a target's base URL.
    expression_env: dict[str, Any] = Field(default_factory=dict)
    # FULL survives power loss; NORMAL (WAL) survives a process crash and is much faster.
    sqlite_synchronous: str = "NORMAL"
    # Bound on the SQLite -wal file under sustained load (docs/benchmarks.md "Disk").
    sqlite_wal_limit: int = Field(default=64 * KIB * KIB, ge=KIB * KIB)
    # What one client connection may cost the HTTP server (docs/deployment.md).
    server_max_header_bytes: int = Field(default=64 * KIB, ge=KIB)
    server_header_timeout: float = Field(default=10.0, gt=0)
    server_body_timeout: float = Field(default=60.0, gt=0)
    server_keep_alive_timeout: float = Field(default=5.0, gt=0)
    server_max_connections: int = Field(default=1024, ge=1)
    # The address senders reach this deployment at (behind a proxy, say): webhook URLs
    # start with it. Unset: the serve address, REFLOW_HOST and REFLOW_PORT (docs/api.md).
    public_url: str | None = None

    @field_validator("log_retention", "execution_timeout", "lease_seconds", "purge_interval",
                     "scheduler_interval", "http_timeout", "executor_hang_timeout",
                     "worker_poll_interval", "shutdown_grace", "server_header_timeout",
                     "server_body_timeout",
                     "server_keep_alive_timeout", "user_token_ttl", "error_stream_timeout",
                     "error_stream_interval", "error_stream_max_age", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> float:
        # Environment values are text: a bare number there means seconds.
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        return parse_duration(value)

    @field_validator("step_output_cap", "max_body_bytes", "executor_memory_limit",
                     "sqlite_wal_limit", "server_max_header_bytes", mode="before")
    @classmethod
    def _bytes(cls, value: Any) -> int:
        return _size(value)

    @field_validator("http_allow_networks", mode="before")
    @classmethod
    def _networks(cls, value: Any) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        if isinstance(value, str):
            value = [part for part in value.replace(" ", "").split(",") if part]
        return tuple(ipaddress.ip_network(item, strict=False) for item in value)

    @field_validator("secret_key")
    @classmethod
    def _secret_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            keyring(value.get_secret_value())  # its ValueError says which key is malformed
        return value

    @field_validator("executor_memory_limit")
    @classmethod
    def _memory_limit(cls, value: int) -> int:
        # Below this an executor cannot even import reflow, and would be restarted forever.
        if 0 < value < 256 * KIB * KIB:
            raise ValueError("must be 0 (no limit) or at least 256MiB")
        return value

    @field_validator("sqlite_synchronous")
    @classmethod
    def _synchronous(cls, value: str) -> str:
        if value.upper() not in {"OFF", "NORMAL", "FULL", "EXTRA"}:
            raise ValueError("must be one of OFF, NORMAL, FULL, EXTRA")
        return value.upper()

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str) -> str:
        if not value.startswith(("sqlite:///", "postgresql://", "postgres://")):
            raise ValueError("must be sqlite:///<path> or postgresql://[user@]host[:port]/db")
        return value

    @property
    def sqlite_path(self) -> str:
        """The SQLite file path from the database URL (``:memory:`` allowed for tests)."""
        return self.database_url.removeprefix("sqlite:///")

    @property
    def dev_secret_file(self) -> Path:
        """Where `make run` keeps the dev REFLOW_SECRET_KEY: beside the dev key file."""
        return self.dev_key_file.parent / ".reflow-dev-secret"

    def secret_key_text(self) -> str | None:
        """REFLOW_SECRET_KEY's keys as written (comma-separated, newest first), else in dev
        `make run`'s file (so a CLI beside `make run` uses the server's keys); None if
        neither."""
        if self.secret_key is not None:
            return self.secret_key.get_secret_value()
        if self.env is not Environment.DEV:
            return None
        try:
            return self.dev_secret_file.read_text()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise SettingsError(f"cannot read {self.dev_secret_file}: {exc.strerror}") from None

    def secret_keyring(self) -> MultiFernet | None:
        """The keys that seal trigger secrets (``secret_key_text``); None without any."""
        text = self.secret_key_text()
        if text is None:
            return None
        try:
            return keyring(text)
        except ValueError as exc:
            source = "REFLOW_SECRET_KEY" if self.secret_key is not None else self.dev_secret_file
            raise SettingsError(f"{source}: {exc}") from None

    def require_secret_key(self) -> None:
        """Refuse to serve in production without REFLOW_SECRET_KEY."""
        if self.env is Environment.PRODUCTION and self.secret_key is None:
            raise SettingsError(
                "REFLOW_SECRET_KEY is not set: production needs it to encrypt users' "
                "credentials and the secret fields of trigger payloads. Make one with: "
                "python -c 'import base64,os; "
                "print(base64.urlsafe_b64encode(os.urandom(32)).decode())' "
                "(docs/security.md)"
            )

    @property
    def base_url(self) -> str:
        """Where the API listens, as a client would call it."""
        return f"http://{self.host}:{self.port}"

    @property
    def public_base_url(self) -> str:
        """Where senders from outside call this deployment (REFLOW_PUBLIC_URL, else the
        serve address), without a trailing slash."""
        return self.public_url or self.base_url

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        parts = urlsplit(value.strip())
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("must be an http:// or https:// URL, e.g. https://reflow.example.com")
        if parts.query or parts.fragment:
            raise ValueError("must not have a query or a fragment")
        return urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))


OAUTH_ENV_PREFIX = "REFLOW_OAUTH_"


def _oauth_environment() -> dict[str, SecretStr]:
    return {name: SecretStr(value) for name, value in os.environ.items()
            if name.startswith(OAUTH_ENV_PREFIX)}


def load_settings(**overrides: Any) -> Settings:
    """Read the environment (plus overrides, e.g. CLI flags); bad values raise SettingsError."""
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except PydanticSettingsError as exc:
        # Raised before validation, e.g. for a JSON setting that is not JSON.
        field = re.search(r'field "(\w+)"', str(exc))
        name = f"REFLOW_{field.group(1).upper()}" if field else "a REFLOW_ variable"
        raise SettingsError(f"invalid settings: {name}: cannot parse its value") from exc
    except ValidationError as exc:
        problems = "; ".join(
            f"REFLOW_{'_'.join(str(p) for p in err['loc']).upper()}: {err['msg']}"
            for err in exc.errors()
        )
        raise SettingsError(f"invalid settings: {problems}") from exc
