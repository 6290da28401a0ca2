"""The engine as Settings configure it: one per process that runs executions."""

from __future__ import annotations

from reflow.blocks.http import HttpPolicy, create_http_clients
from reflow.engine import Engine, EngineConfig, Marker
from reflow.settings import Settings


def build_engine(settings: Settings, marker: Marker | None = None) -> Engine:
    """An engine with its own outgoing HTTP client, configured from ``settings``."""
    http = create_http_clients(HttpPolicy(
        allow_networks=settings.http_allow_networks, timeout=settings.http_timeout,
        team_connections=settings.http_team_connections,
        host_connections=settings.http_host_connections,
        team_clients=settings.http_team_clients,
    ))
    config = EngineConfig(
        step_output_cap=settings.step_output_cap,
        execution_timeout=settings.execution_timeout,
        http_timeout=settings.http_timeout,
        env=settings.expression_env,
    )
    return Engine(config, http, marker)


async def close_engine(engine: Engine) -> None:
    """Close what ``build_engine`` opened."""
    if engine.http is not None:
        await engine.http.aclose()
