"""Settings: documented defaults, REFLOW_* parsing, and refusals that name the variable."""

from __future__ import annotations

import ipaddress
import os

import pytest

from reflow.errors import SettingsError
from reflow.settings import Environment, load_settings

KIB = 1024
DAY = 86_400.0


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No REFLOW_* variable of the machine running the tests leaks in."""
    for name in list(os.environ):
        if name.upper().startswith("REFLOW_"):
            monkeypatch.delenv(name)


def test_defaults_serve_a_local_sqlite_file_on_loopback() -> None:
    settings = load_settings()
    assert settings.database_url == "sqlite:///./reflow.db"
    assert settings.sqlite_path == "./reflow.db"
    assert settings.host == "127.0.0.1"
    assert settings.port == 8080
    assert settings.base_url == "http://127.0.0.1:8080"
    assert settings.env is Environment.PRODUCTION


def test_defaults_keep_logs_7_days_and_cap_step_output_at_256_kib() -> None:
    settings = load_settings()
    assert settings.log_retention == 7 * DAY
    assert settings.step_output_cap == 256 * KIB
    assert settings.max_body_bytes == 10 * KIB * KIB
    assert settings.http_allow_networks == ()


def test_environment_variables_set_their_fields(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REFLOW_DATABASE_URL", "sqlite:////var/lib/reflow/r.db")
    monkeypatch.setenv("REFLOW_HOST", "0.0.0.0")
    monkeypatch.setenv("REFLOW_PORT", "9090")
    monkeypatch.setenv("REFLOW_ENV", "dev")
    settings = load_settings()
    assert settings.sqlite_path == "/var/lib/reflow/r.db"
    assert (settings.host, settings.port) == ("0.0.0.0", 9090)
    assert settings.env is Environment.DEV


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("3d", 3 * DAY), ("12h", 43_200.0), ("1h30m", 5_400.0), ("90s", 90.0), ("500ms", 0.5)],
)
def test_log_retention_reads_durations(
    monkeypatch: pytest.MonkeyPatch, text: str, seconds: float
) -> None:
    monkeypatch.setenv("REFLOW_LOG_RETENTION", text)
    assert load_settings().log_retention == seconds


def test_a_plain_number_is_seconds_for_a_variable_named_seconds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("REFLOW_LEASE_SECONDS", "30")
    assert load_settings().lease_seconds == 30.0


@pytest.mark.parametrize(
    ("text", "size"),
    [("64KiB", 64 * KIB), ("64 KiB", 64 * KIB), ("1MiB", KIB * KIB), ("1.5kib", 1536),
     ("500kb", 500_000), ("2MB", 2_000_000), ("4096", 4096), ("4096b", 4096)],
)
def test_step_output_cap_reads_sizes(monkeypatch: pytest.MonkeyPatch, text: str, size: int) -> None:
    monkeypatch.setenv("REFLOW_STEP_OUTPUT_CAP", text)
    assert load_settings().step_output_cap == size


def test_allowed_networks_read_a_comma_separated_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REFLOW_HTTP_ALLOW_NETWORKS", "10.0.0.0/8, 192.168.1.7,::1")
    assert load_settings().http_allow_networks == (
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("192.168.1.7/32"),
        ipaddress.ip_network("::1/128"),
    )


def test_allowed_network_with_host_bits_is_widened_to_its_network(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("REFLOW_HTTP_ALLOW_NETWORKS", "10.1.2.3/8")
    assert load_settings().http_allow_networks == (ipaddress.ip_network("10.0.0.0/8"),)


def test_expression_env_reads_a_json_object(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REFLOW_EXPRESSION_ENV", '{"shopUrl": "https://shop.example", "n": 2}')
    assert load_settings().expression_env == {"shopUrl": "https://shop.example", "n": 2}


def test_sqlite_synchronous_is_case_insensitive(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REFLOW_SQLITE_SYNCHRONOUS", "full")
    assert load_settings().sqlite_synchronous == "FULL"


def test_overrides_win_over_the_environment_and_none_means_unset(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("REFLOW_PORT", "9090")
    assert load_settings(port=7070).port == 7070
    assert load_settings(port=None).port == 9090


def test_settings_are_frozen() -> None:
    settings = load_settings()
    with pytest.raises(ValueError, match="frozen"):
        settings.port = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("REFLOW_PORT", "abc"),
        ("REFLOW_PORT", "0"),
        ("REFLOW_PORT", "65536"),
        ("REFLOW_LOG_RETENTION", "soon"),
        ("REFLOW_LOG_RETENTION", "-1d"),
        ("REFLOW_LOG_RETENTION", "1s1h"),
        ("REFLOW_STEP_OUTPUT_CAP", "lots"),
        ("REFLOW_MAX_BODY_BYTES", "10 gigs"),
        ("REFLOW_HTTP_ALLOW_NETWORKS", "10.0.0.0/8,intranet"),
        ("REFLOW_HTTP_ALLOW_NETWORKS", "10.0.0.0/33"),
        ("REFLOW_DATABASE_URL", "mysql://db/reflow"),
        ("REFLOW_SQLITE_SYNCHRONOUS", "sometimes"),
        ("REFLOW_ENV", "staging"),
        ("REFLOW_WORKER_CONCURRENCY", "0"),
        ("REFLOW_EXPRESSION_ENV", "not json"),
        # Well-formed but unworkable: a negative cap would mark every step output truncated;
        # a zero body limit refuses every request.
        ("REFLOW_STEP_OUTPUT_CAP", "-1"),
        ("REFLOW_MAX_BODY_BYTES", "0"),
        # Zero makes every execution time out at once, and the heartbeat spin.
        ("REFLOW_EXECUTION_TIMEOUT", "0s"),
        ("REFLOW_LEASE_SECONDS", "0s"),
    ],
)
def test_malformed_or_unworkable_value_raises_settings_error_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError, match=name):
        load_settings()


def test_settings_error_lists_every_bad_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REFLOW_PORT", "abc")
    monkeypatch.setenv("REFLOW_LOG_RETENTION", "soon")
    with pytest.raises(SettingsError) as refused:
        load_settings()
    assert "REFLOW_PORT" in refused.value.message
    assert "REFLOW_LOG_RETENTION" in refused.value.message


def test_server_limits_default_to_64_kib_headers_10_s_headers_60_s_body_1024_connections() -> None:
    settings = load_settings()
    assert settings.server_max_header_bytes == 64 * KIB
    assert settings.server_header_timeout == 10.0
    assert settings.server_body_timeout == 60.0
    assert settings.server_keep_alive_timeout == 5.0
    assert settings.server_max_connections == 1024


def test_server_limits_read_sizes_and_durations(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REFLOW_SERVER_MAX_HEADER_BYTES", "16KiB")
    monkeypatch.setenv("REFLOW_SERVER_HEADER_TIMEOUT", "500ms")
    monkeypatch.setenv("REFLOW_SERVER_BODY_TIMEOUT", "2")
    monkeypatch.setenv("REFLOW_SERVER_KEEP_ALIVE_TIMEOUT", "1m")
    monkeypatch.setenv("REFLOW_SERVER_MAX_CONNECTIONS", "10")
    settings = load_settings()
    assert settings.server_max_header_bytes == 16 * KIB
    assert (settings.server_header_timeout, settings.server_body_timeout) == (0.5, 2.0)
    assert settings.server_keep_alive_timeout == 60.0
    assert settings.server_max_connections == 10


@pytest.mark.parametrize(("name", "value"), [
    ("REFLOW_SERVER_MAX_HEADER_BYTES", "100"), ("REFLOW_SERVER_HEADER_TIMEOUT", "0"),
    ("REFLOW_SERVER_MAX_CONNECTIONS", "0"),
])
def test_unworkable_server_limit_is_refused_naming_its_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError, match=name):
        load_settings()


@pytest.mark.parametrize(("text", "size"), [("2GiB", 2 * KIB**3), ("512MiB", 512 * KIB**2),
                                            ("0", 0)])
def test_the_executor_memory_limit_reads_sizes(
    monkeypatch: pytest.MonkeyPatch, text: str, size: int
) -> None:
    monkeypatch.setenv("REFLOW_EXECUTOR_MEMORY_LIMIT", text)
    assert load_settings().executor_memory_limit == size


def test_an_executor_memory_limit_too_small_to_start_python_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("REFLOW_EXECUTOR_MEMORY_LIMIT", "64MiB")
    with pytest.raises(SettingsError, match=r"REFLOW_EXECUTOR_MEMORY_LIMIT: .*at least 256MiB"):
        load_settings()
