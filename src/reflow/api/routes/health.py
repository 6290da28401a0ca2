"""Operations endpoints: liveness, readiness and Prometheus metrics (docs/operations.md).

None takes an API key or a version header (the middleware lets these paths through), and
none is in the OpenAPI document: they are for the orchestrator and the monitoring, not
for API clients. ``/readyz`` and ``/metrics`` tell about the deployment, so operators
should not expose them publicly.
"""

from __future__ import annotations

import asyncio

from fastapi import APIRouter
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.responses import Response

from reflow import metrics
from reflow.api.deps import ReflowDep
from reflow.api.errors import json_response
from reflow.errors import StoreError

router = APIRouter(include_in_schema=False)

# A database that does not answer within this is as good as down for a load balancer.
READY_TIMEOUT = 2.0


@router.get("/healthz")
@router.get("/health")  # the first name, kept for existing probes
async def healthz() -> Response:
    """Liveness: the process answers (no database access)."""
    return json_response({"status": "ok"})


@router.get("/readyz")
async def readyz(reflow: ReflowDep) -> Response:
    """Readiness: the database answers, with its schema at the migrations' head."""
    try:
        async with asyncio.timeout(READY_TIMEOUT):
            await reflow.store.ping()
    except TimeoutError:
        return _unavailable(f"the database did not answer within {READY_TIMEOUT:g} s")
    except StoreError as exc:
        return _unavailable(exc.message)
    return json_response({"status": "ready"})


def _unavailable(message: str) -> Response:
    return json_response({"status": "unavailable", "message": message}, 503)


@router.get("/metrics")
async def prometheus_metrics(reflow: ReflowDep) -> Response:
    """This process's metrics in Prometheus' text format."""
    body = await metrics.render(reflow.store, len(reflow.worker.running),
                                reflow.clock.now_ms())
    return Response(body, media_type=CONTENT_TYPE_LATEST)
