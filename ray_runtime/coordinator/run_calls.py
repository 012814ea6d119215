"""The run calls of the coordinator's driver handle (``coord.runs``): job-mode plugin runs report their progress
and result here under their submission id."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ray_runtime._twins import awaitable, blocking
from ray_runtime.coordinator.calls import Awaitable, Blocking, Call, Handle, error_json, from_json, to_json
from ray_runtime.coordinator.messages import RunFinish, RunList, RunProgress, RunRef, RunStart
from ray_runtime.models import Run, TaskError

__all__ = ["AsyncRuns", "RunCalls", "Runs", "parse_run"]


def parse_run(wire: dict[str, Any]) -> Run:
    error = wire["error"]
    return Run.model_validate(
        {
            **wire,
            "params": json.loads(wire["params"]),
            "metadata": from_json(wire["metadata"]),
            "result": from_json(wire["result"]),
            "error": None if error is None else json.loads(error),
            "progress": _progress(wire["progress"]),
            "events": [_progress(event) for event in wire["events"]],
        }
    )


def _progress(event: list[Any] | None) -> dict[str, Any] | None:
    if event is None:
        return None
    at, done, total, message = event
    return {"at": at, "done": done, "total": total, "message": message}


class RunCalls(Handle):
    """Builders of the run calls: job-mode plugin runs report here under their submission id."""

    def _start(
        self, run_id: str, *, plugin: str, action: str, params: Any = None, metadata: Mapping[str, Any] | None = None
    ) -> Call[Run]:
        """Record that a run began (again: returns the existing record)."""
        message = RunStart(
            self.tenant,
            run_id,
            plugin,
            action,
            to_json("params", params),
            None if metadata is None else to_json("metadata", metadata),
        )
        return Call("run_start", message, parse_run)

    def _progress(self, run_id: str, done: float, total: float | None = None, message: str = "") -> Call[Run]:
        """Add a progress report to a running run."""
        return Call("run_progress", RunProgress(self.tenant, run_id, done, total, message), parse_run)

    def _finish(
        self,
        run_id: str,
        *,
        result: Any = None,
        error: BaseException | TaskError | Mapping[str, Any] | str | None = None,
    ) -> Call[Run]:
        """End a run with its result, or with an error (then it failed)."""
        encoded_error = None if error is None else error_json(error)
        encoded_result = None if error is not None else to_json("result", result)
        return Call("run_finish", RunFinish(self.tenant, run_id, encoded_result, encoded_error), parse_run)

    def _get(self, run_id: str) -> Call[Run]:
        """One run by id (a Ray submission id for jobs)."""
        return Call("run_get", RunRef(self.tenant, run_id), parse_run)

    def _find(self, run_id: str) -> Call[Run | None]:
        """One run by id, or None if none is recorded under it."""
        return Call("run_find", RunRef(self.tenant, run_id), lambda raw: None if raw is None else parse_run(raw))

    def _list(self, *, plugin: str | None = None, limit: int = 100) -> Call[list[Run]]:
        """The tenant's runs, newest first."""
        return Call("runs", RunList(self.tenant, plugin, limit), lambda raw: [parse_run(w) for w in raw])


class Runs(RunCalls, Blocking):
    """Plugin runs of one tenant (blocking); reach it as ``coord.runs``."""

    start = blocking(RunCalls._start)
    progress = blocking(RunCalls._progress)
    finish = blocking(RunCalls._finish)
    get = blocking(RunCalls._get)
    find = blocking(RunCalls._find)
    list = blocking(RunCalls._list)


class AsyncRuns(RunCalls, Awaitable):
    """Plugin runs of one tenant (awaitable); reach it as ``coord.aio.runs``."""

    start = awaitable(RunCalls._start)
    progress = awaitable(RunCalls._progress)
    finish = awaitable(RunCalls._finish)
    get = awaitable(RunCalls._get)
    find = awaitable(RunCalls._find)
    list = awaitable(RunCalls._list)
