"""Liveness, readiness (naming what is down) and Prometheus metrics."""

from __future__ import annotations

import asyncio

import ray
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ray_runtime.api.deps import ClusterAdmin, ServicesDep
from ray_runtime.models.api import HealthCheck, HealthReport

router = APIRouter(tags=["health"])


@router.get("/health/live")
async def live() -> HealthReport:
    """The façade process answers."""
    return HealthReport(status="live")


async def _check(name: str, probe: object) -> tuple[str, HealthCheck]:
    try:
        await asyncio.wait_for(probe, timeout=5)  # type: ignore[arg-type]
        return name, HealthCheck(ok=True)
    except Exception as exc:
        return name, HealthCheck(ok=False, detail=f"{type(exc).__name__}: {exc}"[:300])


@router.get("/health/ready", responses={503: {"model": HealthReport}})
async def ready(services: ServicesDep) -> JSONResponse:
    """Ray's GCS, the dashboard and the coordinator answer; 503 names whatever does not."""
    checks = dict(
        await asyncio.gather(
            _check("ray_gcs", asyncio.to_thread(ray.cluster_resources)),
            _check("dashboard", services.dashboard.json("GET", "/api/version")),
            _check("coordinator", services.coordinator.info()),
        )
    )
    healthy = all(check.ok for check in checks.values())
    report = HealthReport(status="ready" if healthy else "unavailable", checks=checks)
    return JSONResponse(report.model_dump(mode="json"), status_code=200 if healthy else 503)


@router.get("/metrics", response_class=Response)
async def metrics(request: Request, services: ServicesDep, caller: ClusterAdmin) -> Response:
    """Prometheus text (cluster-wide, so a cluster admin's): request counts and latencies, log streams, tasks."""
    metrics = request.app.state.metrics
    metrics.streams.set(services.logs.active_streams if services.logs else 0)
    info = await services.coordinator.info()
    for status, count in info["counts"].items():
        metrics.tasks.labels(status).set(count)
    return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)
