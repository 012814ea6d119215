"""Job mode: ``python -m ray_runtime run <plugin> <action> --params '<json>'`` (or ``--params @file.json``).

This is the entrypoint of a plugin's Ray job; it works with the stock ``ray job submit``::

    ray job submit --working-dir plugins/hello -- python -m ray_runtime run . greet --params '{"name": "Ada"}'

Inside a Ray job the run is recorded in the coordinator under the job's submission id: its parameters, its
progress, and its typed result or error, so a client reads the result as data, never from the logs.

Exit codes: 0 the action succeeded; 1 the action raised; 2 nothing ran (bad manifest, action, mode or params).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ray_runtime._ids import new_id
from ray_runtime.errors import RayRuntimeError
from ray_runtime.models.resources import ResourcesUpdate
from ray_runtime.plugins.action import Context, LoadedAction, Reporter, throttle
from ray_runtime.plugins.manifest import load

__all__ = ["EXIT_ACTION_FAILED", "EXIT_BAD_INPUT", "EXIT_OK", "JobOptions", "main", "run_job", "submission_id"]

EXIT_OK, EXIT_ACTION_FAILED, EXIT_BAD_INPUT = 0, 1, 2
_JOB_CONFIG_ENV = "RAY_JOB_CONFIG_JSON_ENV_VAR"  # set by Ray's job supervisor for the entrypoint


def job_metadata() -> dict[str, str]:
    """The Ray job metadata of the job this process is the entrypoint of (empty outside a job)."""
    try:
        metadata = json.loads(os.environ.get(_JOB_CONFIG_ENV) or "{}").get("metadata")
    except (ValueError, AttributeError):
        return {}
    return metadata if isinstance(metadata, dict) else {}


def submission_id() -> str | None:
    """The Ray submission id of the job this process is the entrypoint of, if it is one."""
    return job_metadata().get("job_submission_id")


@dataclass(frozen=True)
class JobOptions:
    """How ``run`` records the run: where, for whom, and under which id."""

    tenant: str | None = None
    run_id: str | None = None
    record: bool | None = None  # None: record when running as a Ray job
    resources_id: str | None = None


class _JobReporter(Reporter):
    """Progress goes to the job log and, throttled, to the coordinator's run record."""

    def __init__(self, coord: Any | None, resources_id: str | None) -> None:
        self.coord = coord
        self.resources_id = resources_id
        self.gate = throttle(0.5)
        self.pending: tuple[float, float | None, str] | None = None

    def progress(self, ctx: Context, done: float, total: float | None, message: str) -> None:
        shown = f"{done:g}/{total:g}" if total is not None else f"{done:g}"
        print(f"[progress] {shown} {message}".rstrip(), flush=True)
        self.pending = (done, total, message)
        if self.coord is not None and self.gate():
            self.flush(ctx)

    def flush(self, ctx: Context) -> None:
        if self.coord is not None and self.pending is not None and ctx.run_id is not None:
            self.coord.runs.progress(ctx.run_id, *self.pending)
            self.pending = None

    def resources(self, ctx: Context) -> ResourcesUpdate | None:
        if self.coord is None:
            return None
        if self.resources_id is not None:
            return self.coord.resources.get(self.resources_id)
        from ray_runtime.errors import ResourcesNotFoundError

        try:
            return self.coord.resources.latest()
        except ResourcesNotFoundError:
            return None


def _read_params(params: str | None) -> str:
    if params is None:
        return "{}"
    if params.startswith("@"):
        return Path(params[1:]).expanduser().read_text()
    return params


def _fail_input(message: str) -> int:
    print(f"error: {message}", file=sys.stderr, flush=True)
    return EXIT_BAD_INPUT


def run_job(plugin_path: str, action: str, params: str | None, options: JobOptions = JobOptions()) -> int:
    """Run one action as this process's job; returns the exit code (see the module docstring)."""
    try:
        plugin = load(plugin_path)
        spec = plugin.action(action)
        if "job" not in spec.modes:
            return _fail_input(f"action {action!r} of plugin {plugin.name!r} does not run in job mode")
        text = _read_params(params)
        for key, value in plugin.manifest.runtime_env.env_vars.items():
            os.environ.setdefault(key, value)  # as in the runtime_env, also under a stock `ray job submit`
        loaded = LoadedAction.load(plugin.name, action, plugin.path, spec.entrypoint)
        validated = loaded.signature.validate(text)
    except RayRuntimeError as exc:
        return _fail_input(exc.message)
    except OSError as exc:
        return _fail_input(f"cannot read params: {exc}")

    sid = submission_id()
    tenant = options.tenant or job_metadata().get("ray_runtime.tenant")  # the façade writes the caller's tenant
    record = options.record if options.record is not None else sid is not None
    run_id = options.run_id or sid or new_id("run")
    start = {
        "plugin": plugin.name,
        "action": action,
        "params": validated.model_dump(mode="json"),
        "metadata": {"mode": "job", "plugin_version": plugin.manifest.version},
    }
    coord = _connect(tenant) if record else None
    if coord is not None:
        coord.runs.start(run_id, **start)
    reporter = _JobReporter(coord, options.resources_id)
    ctx = loaded.context("job", run_id=run_id, reporter=reporter)
    print(f"[run] {plugin.name}/{action} run {run_id}", flush=True)
    try:
        result = _execute(loaded, validated, ctx)
    except Exception as exc:
        traceback.print_exc()
        reporter.flush(ctx)
        if coord is not None:
            coord.runs.finish(run_id, error=exc)
        return EXIT_ACTION_FAILED
    reporter.flush(ctx)
    if coord is not None:
        coord.runs.finish(run_id, result=result)
    print(f"[result] {json.dumps(result)[:2000]}", flush=True)
    return EXIT_OK


def _execute(loaded: LoadedAction, params: Any, ctx: Context) -> Any:
    if not loaded.signature.streaming:
        return loaded.run(params, ctx)
    chunks = []
    for chunk in loaded.stream(params, ctx):
        print(f"[chunk] {json.dumps(chunk)}", flush=True)
        chunks.append(chunk)
    return chunks


def _connect(tenant: str | None) -> Any:
    from ray_runtime._ray import init_ray
    from ray_runtime.coordinator import connect

    init_ray()  # the job's own cluster (Ray sets RAY_ADDRESS for a job's driver), quietly
    return connect(tenant=tenant)


def main(argv: list[str]) -> int:
    """``python -m ray_runtime run PLUGIN ACTION [--params JSON|@file] [--tenant T] [--run-id ID] ...``."""
    parser = argparse.ArgumentParser(prog="python -m ray_runtime run", description=__doc__.split("\n\n")[0])
    parser.add_argument("plugin", help="plugin folder ('.' inside a job's working_dir)")
    parser.add_argument("action")
    parser.add_argument("--params", "-p", help="JSON parameters, or @file.json")
    parser.add_argument("--tenant", default=os.environ.get("RAY_RUNTIME_TENANT"))
    parser.add_argument("--run-id")
    parser.add_argument("--record", action=argparse.BooleanOptionalAction, default=None)
    parser.add_argument("--resources-id")
    args = parser.parse_args(argv)
    options = JobOptions(tenant=args.tenant, run_id=args.run_id, record=args.record, resources_id=args.resources_id)
    return run_job(args.plugin, args.action, args.params, options)
