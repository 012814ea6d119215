"""Every API call, written once as a :class:`Request`: path, query, body, and the typed answer.

The public clients turn each builder into a method (``_get_job`` becomes ``get_job``); docstrings live here.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Literal, TypeVar, Unpack
from urllib.parse import quote

import httpx
import pydantic
from pydantic import BaseModel, TypeAdapter

from ray_runtime.client._http import Request
from ray_runtime.errors import ValidationError
from ray_runtime.models.api import (
    ApiKey,
    ClusterListing,
    CompleteResponse,
    HealthReport,
    JobInfo,
    JobPage,
    JobStatus,
    KeyCreated,
    LogRange,
    Me,
    Scope,
    ServeApplication,
)
from ray_runtime.models.resources import RESOURCE_TYPES, ResourcesUpdate, named_resources_adapter
from ray_runtime.models.tasks import (
    Lease,
    QueueStats,
    Task,
    TaskError,
    TaskOptions,
    TaskPage,
    TaskStatus,
    WaitResult,
    WorkerInfo,
    task_specs,
)

__all__ = ["Calls", "ClusterKind"]

M = TypeVar("M")
ClusterKind = Literal["nodes", "actors", "tasks", "workers", "placement_groups"]


def _typed(kind: Any) -> Callable[[httpx.Response], Any]:
    adapter = TypeAdapter(kind)
    return lambda response: adapter.validate_json(response.content)


def _none(response: httpx.Response) -> None:
    return None


def _field(name: str) -> Callable[[httpx.Response], Any]:
    return lambda response: response.json()[name]


@contextmanager
def _checked(what: str) -> Iterator[None]:
    """Input checked here, before sending, fails as the server would: a ``ValidationError`` naming each field."""
    try:
        yield
    except pydantic.ValidationError as exc:
        raise ValidationError.from_pydantic(what, exc, tags=RESOURCE_TYPES) from None


def _segment(value: str) -> str:
    return quote(str(value), safe="")


def _json(value: Any) -> Any:
    return value.model_dump(mode="json") if isinstance(value, BaseModel) else value


def _params(**values: Any) -> dict[str, Any]:
    return {
        key: value.value if hasattr(value, "value") else value for key, value in values.items() if value is not None
    }


class Calls:
    """The builders; the clients wrap each ``_name`` into a public ``name``."""

    # ---------------------------------------------------------------------------------------------- health

    def _health_check(self) -> Request[HealthReport]:
        """Readiness of the façade and what it depends on (Ray's GCS, the dashboard, the coordinator).

        Returns the report also when something is down (its ``status`` says ``unavailable``).
        """

        def parse(response: httpx.Response) -> HealthReport:
            return HealthReport.model_validate_json(response.content)

        return Request("GET", "/health/ready", parse, accept=frozenset({503}))

    # ------------------------------------------------------------------------------------------------ jobs

    def _submit_plugin(
        self,
        plugin: str,
        action: str,
        params: Any = None,
        *,
        submission_id: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> Request[JobInfo]:
        """Submit a plugin action as a Ray job (the façade packs and uploads the plugin)."""
        body = {"plugin": plugin, "action": action, "params": _json(params), "submission_id": submission_id}
        body["metadata"] = dict(metadata or {})
        return Request("POST", "/api/v1/jobs", _typed(JobInfo), json=body)

    def _submit_job(
        self,
        entrypoint: str,
        *,
        runtime_env: Mapping[str, Any] | None = None,
        submission_id: str | None = None,
        metadata: Mapping[str, str] | None = None,
        entrypoint_num_cpus: float | None = None,
        entrypoint_num_gpus: float | None = None,
        entrypoint_memory: int | None = None,
        entrypoint_resources: Mapping[str, float] | None = None,
    ) -> Request[JobInfo]:
        """Submit a raw entrypoint (working_dir must be a URI the cluster can fetch, e.g. a gcs:// package)."""
        body = {
            "entrypoint": entrypoint,
            "runtime_env": dict(runtime_env) if runtime_env else None,
            "submission_id": submission_id,
            "metadata": dict(metadata or {}),
            "entrypoint_num_cpus": entrypoint_num_cpus,
            "entrypoint_num_gpus": entrypoint_num_gpus,
            "entrypoint_memory": entrypoint_memory,
            "entrypoint_resources": dict(entrypoint_resources) if entrypoint_resources else None,
        }
        return Request("POST", "/api/v1/jobs", _typed(JobInfo), json={k: v for k, v in body.items() if v is not None})

    def _list_jobs(
        self,
        *,
        status: JobStatus | str | None = None,
        plugin: str | None = None,
        submitted_by: str | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> Request[JobPage]:
        """One page of your jobs, newest first (``iter_jobs`` walks every page)."""
        params = _params(
            status=status,
            plugin=plugin,
            submitted_by=submitted_by,
            since=since,
            until=until,
            limit=limit,
            cursor=cursor,
        )
        return Request("GET", "/api/v1/jobs", _typed(JobPage), params=params)

    def _get_job(self, job_id: str) -> Request[JobInfo]:
        """Ray's status and, for plugin jobs, the recorded run (progress and typed result)."""
        return Request("GET", f"/api/v1/jobs/{_segment(job_id)}", _typed(JobInfo))

    def _get_job_logs(self, job_id: str, *, offset: int = 0, limit: int | None = None) -> Request[LogRange]:
        """A bounded byte range of the job's log."""
        params = _params(offset=offset, limit=limit)
        return Request("GET", f"/api/v1/jobs/{_segment(job_id)}/logs", _typed(LogRange), params=params)

    def _stop_job(self, job_id: str) -> Request[JobInfo]:
        """Stop a running job."""
        return Request("POST", f"/api/v1/jobs/{_segment(job_id)}/stop", _typed(JobInfo), idempotent=True)

    def _delete_job(self, job_id: str) -> Request[None]:
        """Delete a finished job and its logs."""
        return Request("DELETE", f"/api/v1/jobs/{_segment(job_id)}", _none)

    # --------------------------------------------------------------------------------------------- cluster

    def _list_cluster(
        self, kind: ClusterKind, *, limit: int = 100, detail: bool = False, filters: Mapping[str, str] | None = None
    ) -> Request[ClusterListing]:
        """Nodes, actors, tasks, workers or placement groups (``truncated`` says when Ray cut the list)."""
        query = [f"{key}={value}" for key, value in (filters or {}).items()]
        params = {"limit": limit, "detail": str(detail).lower(), "filter": query}
        return Request("GET", f"/api/v1/cluster/{kind}", _typed(ClusterListing), params=params)

    def _get_cluster(self, kind: ClusterKind, item_id: str) -> Request[dict[str, Any]]:
        """One node, actor, task, worker or placement group by id."""
        return Request("GET", f"/api/v1/cluster/{kind}/{_segment(item_id)}", _typed(dict[str, Any]))

    def _list_nodes(self, *, limit: int = 100, detail: bool = False) -> Request[ClusterListing]:
        """The cluster's nodes."""
        return self._list_cluster("nodes", limit=limit, detail=detail)

    def _list_actors(self, *, limit: int = 100, detail: bool = False) -> Request[ClusterListing]:
        """Actors of your jobs."""
        return self._list_cluster("actors", limit=limit, detail=detail)

    def _list_tasks(self, *, limit: int = 100, detail: bool = False) -> Request[ClusterListing]:
        """Ray tasks of your jobs (not coordinator tasks: see ``query_tasks``)."""
        return self._list_cluster("tasks", limit=limit, detail=detail)

    # ----------------------------------------------------------------------------------------------- serve

    def _list_applications(self) -> Request[list[ServeApplication]]:
        """Your Serve applications."""
        return Request("GET", "/api/v1/serve/applications", _typed(list[ServeApplication]))

    def _get_application(self, name: str) -> Request[ServeApplication]:
        """One of your Serve applications."""
        return Request("GET", f"/api/v1/serve/applications/{_segment(name)}", _typed(ServeApplication))

    def _deploy_plugin(self, plugin: str, *, actions: Iterable[str] | None = None) -> Request[list[ServeApplication]]:
        """Deploy (or replace) a plugin's serve-mode actions, one application each; others stay untouched."""
        body = {"plugin": plugin, "actions": list(actions) if actions else None}
        return Request(
            "PUT", f"/api/v1/serve/applications/{_segment(plugin)}", _typed(list[ServeApplication]), json=body
        )

    def _deploy_application(
        self,
        name: str,
        import_path: str,
        *,
        args: Mapping[str, Any] | None = None,
        runtime_env: Mapping[str, Any] | None = None,
        route_prefix: str | None = None,
        deployments: list[dict[str, Any]] | None = None,
    ) -> Request[list[ServeApplication]]:
        """Deploy (or replace) one application from an import path, as in a Serve config."""
        body = {
            "import_path": import_path,
            "args": args,
            "runtime_env": runtime_env,
            "route_prefix": route_prefix,
            "deployments": deployments,
        }
        body = {k: v for k, v in body.items() if v is not None}
        return Request("PUT", f"/api/v1/serve/applications/{_segment(name)}", _typed(list[ServeApplication]), json=body)

    def _delete_application(self, name: str) -> Request[None]:
        """Delete one application (or all of a plugin's, given the plugin name)."""
        return Request("DELETE", f"/api/v1/serve/applications/{_segment(name)}", _none)

    # ---------------------------------------------------------------------------------------------- queues

    def _enqueue(self, queue: str, input: Any = None, **options: Unpack[TaskOptions]) -> Request[str]:
        """Add a task; options as ``TaskSpec`` (priority, delay_s, idempotency_key, max_attempts, ...).

        Retried on connection errors only when it carries an ``idempotency_key``.
        """
        [spec] = task_specs([_json(input)], options, field="task options")
        return Request(
            "POST",
            f"/api/v1/queues/{_segment(queue)}/tasks",
            _field("task_id"),
            json=spec.model_dump(mode="json", exclude_none=True),
            idempotent=spec.idempotency_key is not None,
        )

    def _enqueue_many(
        self, queue: str, items: Iterable[Any], **options: Unpack[TaskOptions]
    ) -> Request[builtins.list[str]]:
        """Add many tasks at once (all or nothing); items are inputs or ``TaskSpec``."""
        specs = task_specs((_json(item) for item in items), options, field="task options")
        tasks = [spec.model_dump(mode="json", exclude_none=True) for spec in specs]
        return Request(
            "POST", f"/api/v1/queues/{_segment(queue)}/tasks/batch", _field("task_ids"), json={"tasks": tasks}
        )

    def _claim(
        self, queue: str, worker_id: str, *, max_tasks: int = 1, lease_s: float | None = None, wait_s: float = 0.0
    ) -> Request[builtins.list[Lease]]:
        """Lease tasks; with ``wait_s`` (<= 60) the call returns as soon as one is claimable."""
        body = {"worker_id": worker_id, "max_tasks": max_tasks, "lease_s": lease_s, "wait_s": wait_s}
        return Request(
            "POST",
            f"/api/v1/queues/{_segment(queue)}/claim",
            _typed(list[Lease]),
            json={k: v for k, v in body.items() if v is not None},
            extra_timeout_s=wait_s,
        )

    def _heartbeat(self, attempt_id: str, extend_s: float | None = None) -> Request[Lease]:
        """Extend a live lease."""
        return Request(
            "POST",
            f"/api/v1/attempts/{_segment(attempt_id)}/heartbeat",
            _typed(Lease),
            json={"extend_s": extend_s} if extend_s else {},
            idempotent=True,
        )

    def _complete(self, attempt_id: str, result: Any = None) -> Request[Task]:
        """Hand in a live attempt's result."""
        return Request(
            "POST",
            f"/api/v1/attempts/{_segment(attempt_id)}/complete",
            lambda r: CompleteResponse.model_validate_json(r.content).task,
            json={"result": _json(result)},
        )

    def _complete_and_claim(
        self,
        attempt_id: str,
        result: Any = None,
        *,
        queue: str,
        worker_id: str,
        max_tasks: int = 1,
        lease_s: float | None = None,
        wait_s: float = 0.0,
    ) -> Request[tuple[Task, builtins.list[Lease]]]:
        """Hand in a result and claim the next task(s) in one call."""
        nxt = {"queue": queue, "worker_id": worker_id, "max_tasks": max_tasks, "lease_s": lease_s, "wait_s": wait_s}

        def parse(response: httpx.Response) -> tuple[Task, builtins.list[Lease]]:
            done = CompleteResponse.model_validate_json(response.content)
            return done.task, done.leases

        body = {"result": _json(result), "next": {k: v for k, v in nxt.items() if v is not None}}
        return Request(
            "POST", f"/api/v1/attempts/{_segment(attempt_id)}/complete", parse, json=body, extra_timeout_s=wait_s
        )

    def _fail(
        self, attempt_id: str, error: str | TaskError | Mapping[str, Any], *, retryable: bool = True
    ) -> Request[Task]:
        """Fail a live attempt (retried with backoff while attempts remain, unless ``retryable=False``)."""
        body = {"error": _json(error), "retryable": retryable}
        return Request("POST", f"/api/v1/attempts/{_segment(attempt_id)}/fail", _typed(Task), json=body)

    def _cancel_task(self, task_id: str) -> Request[Task]:
        """Cancel a queued or leased task."""
        return Request("POST", f"/api/v1/tasks/{_segment(task_id)}/cancel", _typed(Task))

    def _retry_task(self, task_id: str) -> Request[Task]:
        """Queue a dead, failed or cancelled task again."""
        return Request("POST", f"/api/v1/tasks/{_segment(task_id)}/retry", _typed(Task))

    def _purge_queue(self, queue: str) -> Request[int]:
        """Cancel every queued task of a queue; returns how many."""
        return Request("POST", f"/api/v1/queues/{_segment(queue)}/purge", _field("cancelled"))

    def _queue_stats(self, queue: str) -> Request[QueueStats]:
        """Depth per status, delayed count, oldest age, workers."""
        return Request("GET", f"/api/v1/queues/{_segment(queue)}/stats", _typed(QueueStats))

    def _list_queues(self) -> Request[builtins.list[str]]:
        """Your queues."""
        return Request("GET", "/api/v1/queues", _typed(list[str]))

    def _get_task(self, task_id: str) -> Request[Task]:
        """One coordinator task."""
        return Request("GET", f"/api/v1/tasks/{_segment(task_id)}", _typed(Task))

    def _query_tasks(
        self,
        *,
        queue: str | None = None,
        status: TaskStatus | str | None = None,
        limit: int = 100,
        cursor: str | None = None,
        resources_id: str | None = None,
    ) -> Request[TaskPage]:
        """A page of tasks in creation order (``resources_id``: those pinned to, or last run with, that version)."""
        params = _params(queue=queue, status=status, limit=limit, cursor=cursor, resources_id=resources_id)
        return Request("GET", "/api/v1/tasks", _typed(TaskPage), params=params)

    def _wait_tasks(
        self, task_ids: Iterable[str], *, timeout_s: float = 30.0, return_when: Literal["all", "first"] = "all"
    ) -> Request[WaitResult]:
        """Return when all (or the first) of the tasks end, or after ``timeout_s`` (<= 60)."""
        body = {"task_ids": list(task_ids), "timeout_s": timeout_s, "return_when": return_when}
        return Request(
            "POST", "/api/v1/tasks/wait", _typed(WaitResult), json=body, idempotent=True, extra_timeout_s=timeout_s
        )

    def _workers(self) -> Request[builtins.list[WorkerInfo]]:
        """Workers seen recently, with the attempts they hold."""
        return Request("GET", "/api/v1/workers", _typed(list[WorkerInfo]))

    # ------------------------------------------------------------------------------------------- resources

    def _resources_body(self, named: Mapping[str, Any]) -> dict[str, Any]:
        with _checked("resources"):
            validated = named_resources_adapter.validate_python(dict(named))
        return {"resources": named_resources_adapter.dump_python(validated, mode="json")}

    def _add_resources(self, named: Mapping[str, Any]) -> Request[ResourcesUpdate]:
        """Publish a new version made of exactly these resources."""
        return Request("POST", "/api/v1/resources", _typed(ResourcesUpdate), json=self._resources_body(named))

    def _update_resources(self, named: Mapping[str, Any]) -> Request[ResourcesUpdate]:
        """Publish a new version: the latest with these names added or replaced."""
        return Request("PATCH", "/api/v1/resources", _typed(ResourcesUpdate), json=self._resources_body(named))

    def _get_resources(self, resources_id: str) -> Request[ResourcesUpdate]:
        """One resources version."""
        return Request("GET", f"/api/v1/resources/{_segment(resources_id)}", _typed(ResourcesUpdate))

    def _latest_resources(self) -> Request[ResourcesUpdate]:
        """The newest resources version."""
        return Request("GET", "/api/v1/resources/latest", _typed(ResourcesUpdate))

    def _resources_history(self, limit: int = 100) -> Request[builtins.list[ResourcesUpdate]]:
        """Kept versions, newest first."""
        return Request("GET", "/api/v1/resources", _typed(list[ResourcesUpdate]), params={"limit": limit})

    # ------------------------------------------------------------------------------------------------ keys

    def _me(self) -> Request[Me]:
        """Who this client's key is: tenant, scope, grants, and whether the façade runs in dev mode."""
        return Request("GET", "/api/v1/me", _typed(Me))

    def _create_key(self, tenant: str, scope: Scope | str = Scope.SUBMIT, name: str = "") -> Request[KeyCreated]:
        """A new API key for your tenant (admin); the key is in this answer only."""
        body = {"tenant": tenant, "scope": Scope(scope).value, "name": name}
        return Request("POST", "/api/v1/keys", _typed(KeyCreated), json=body)

    def _list_keys(self) -> Request[builtins.list[ApiKey]]:
        """Your tenant's keys (admin)."""
        return Request("GET", "/api/v1/keys", _typed(list[ApiKey]))

    def _revoke_key(self, key_id: str) -> Request[None]:
        """Revoke one of your tenant's keys (admin)."""
        return Request("DELETE", f"/api/v1/keys/{_segment(key_id)}", _none)
