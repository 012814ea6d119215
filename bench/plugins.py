"""Plugin benchmark: each mode against Ray doing the same without ray_runtime, measured in the same run.

* task mode (``plugins.run``) vs job mode (``plugins.submit_job`` to SUCCEEDED), same action;
* plugin job vs the raw ``JobSubmissionClient.submit_job`` of the same entrypoint and working_dir
  (and, for reference, a bare ``python -c`` job that runs the code without recording anything);
* the textstats Serve endpoint vs a bare Serve deployment running the same function, same load generator.

    python -m bench.plugins [--rounds 5] [--seconds 6] [--concurrency 8]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

import ray_runtime as rr
import ray_runtime.plugins as plugins
from bench._cluster import private_ray, save
from ray_runtime._net import free_port
from ray_runtime.plugins.package import runtime_env
from ray_runtime.plugins.serve_deploy import serve_plugin, wait_for_apps
from ray_runtime.plugins.submit import job_client
from ray_runtime.plugins.upload import ensure_uploaded, package_for

console = Console()
ROOT = Path(__file__).resolve().parent.parent
HELLO, TEXTSTATS = ROOT / "plugins" / "hello", ROOT / "plugins" / "textstats"
RESULTS = Path(".bench/plugins.json")
TEXT = (
    "Ray runs tasks on a cluster. Plugins turn ordinary functions into jobs, tasks, endpoints and workers! "
    "Does the endpoint keep up with a bare deployment? The benchmark says how close it comes. "
    "Each request parses parameters, computes statistics and answers with JSON."
)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def wait_job(client: Any, submission_id: str) -> str:
    while (status := client.get_job_status(submission_id).value) not in ("SUCCEEDED", "FAILED", "STOPPED"):
        time.sleep(0.02)
    return status


def timed(fn: Any) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


# ------------------------------------------------------------------------------------------ task vs job


def measure_task_and_jobs(dashboard: str, rounds: int) -> dict[str, Any]:
    client = job_client(dashboard)
    plugin = plugins.load(HELLO)
    package = package_for(plugin)
    ensure_uploaded(package, submission_client=client)
    env = runtime_env(plugin, package)
    params = json.dumps({"name": "bench"})
    same_entrypoint = f"python -m ray_runtime run . greet --params '{params}'"
    bare = (
        'python -c "import hello; from ray_runtime import Context; '
        "print(hello.greet(hello.Greeting(name='bench'), Context(plugin='hello', action='greet', mode='job')))\""
    )

    def plugin_job() -> None:
        assert wait_job(client, plugins.submit_job(HELLO, "greet", {"name": "bench"}, address=dashboard)) == "SUCCEEDED"

    def raw_job(entrypoint: str) -> None:
        assert wait_job(client, client.submit_job(entrypoint=entrypoint, runtime_env=env)) == "SUCCEEDED"

    task = [timed(lambda: plugins.run(HELLO, "greet", {"name": "bench"})) for _ in range(10)]  # warm-up
    task = [timed(lambda: plugins.run(HELLO, "greet", {"name": "bench"})) for _ in range(100)]
    jobs: dict[str, list[float]] = {"plugin": [], "raw": [], "bare": []}
    plugin_job()
    for _ in range(rounds):  # interleaved, so drift hits every kind alike
        jobs["plugin"].append(timed(plugin_job))
        jobs["raw"].append(timed(lambda: raw_job(same_entrypoint)))
        jobs["bare"].append(timed(lambda: raw_job(bare)))
    return {
        "task_p50": statistics.median(task),
        "task_p95": percentile(task, 0.95),
        "job_plugin": statistics.median(jobs["plugin"]),
        "job_raw": statistics.median(jobs["raw"]),
        "job_bare": statistics.median(jobs["bare"]),
    }


# ------------------------------------------------------------------------------------- serve vs bare


def deploy_bare(env: dict[str, Any]) -> None:
    """The same textstats function behind a plain Serve deployment: parse, validate, compute, answer."""
    from ray import serve
    from starlette.requests import Request

    @serve.deployment(max_ongoing_requests=64, ray_actor_options={"num_cpus": 0.1, "runtime_env": env})
    class BareTextStats:
        async def __call__(self, request: Request) -> dict[str, Any]:
            import textstats

            params = textstats.Text.model_validate_json(await request.body())
            return textstats.analyze(params).model_dump(mode="json")

    serve.run(BareTextStats.bind(), name="bench-bare", route_prefix="/bench/bare")


async def load(url: str, seconds: float, concurrency: int) -> tuple[float, float]:
    """Requests/s and median latency of ``concurrency`` clients posting for ``seconds``."""
    body = json.dumps({"text": TEXT, "top": 5})
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:

        async def one_client() -> None:
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                reply = await client.post(url, content=body, headers={"content-type": "application/json"})
                reply.raise_for_status()
                latencies.append(time.perf_counter() - started)

        started = time.perf_counter()
        await asyncio.gather(*(one_client() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return len(latencies) / elapsed, statistics.median(latencies)


def measure_serve(serve_url: str, dashboard: str, rounds: int, seconds: float, concurrency: int) -> dict[str, Any]:
    wait_for_apps(serve_plugin(TEXTSTATS, actions=["analyze"], dashboard_url=dashboard), dashboard_url=dashboard)
    plugin = plugins.load(TEXTSTATS)
    deploy_bare(runtime_env(plugin, package_for(plugin)))
    targets = {"plugin": f"{serve_url}/plugins/textstats/analyze", "bare": f"{serve_url}/bench/bare"}
    for url in targets.values():
        asyncio.run(load(url, 1.0, concurrency))  # warm-up
    rates: dict[str, list[float]] = {"plugin": [], "bare": []}
    p50s: dict[str, list[float]] = {"plugin": [], "bare": []}
    for _ in range(rounds):
        for name, url in targets.items():
            rate, p50 = asyncio.run(load(url, seconds, concurrency))
            rates[name].append(rate)
            p50s[name].append(p50)
    return {
        "serve_plugin_rps": statistics.median(rates["plugin"]),
        "serve_bare_rps": statistics.median(rates["bare"]),
        "serve_plugin_p50": statistics.median(p50s["plugin"]),
        "serve_bare_p50": statistics.median(p50s["bare"]),
    }


def report(f: dict[str, Any]) -> None:
    table = Table(title="plugin modes (medians)")
    for column in ("figure", "value"):
        table.add_column(column, justify="right")
    table.add_row(
        "task mode, driver -> result (p50 / p95)", f"{f['task_p50'] * 1e3:.1f} ms / {f['task_p95'] * 1e3:.1f} ms"
    )
    table.add_row("plugin job, submit -> SUCCEEDED (recorded)", f"{f['job_plugin']:.2f} s")
    table.add_row("raw JobSubmissionClient, same entrypoint", f"{f['job_raw']:.2f} s")
    table.add_row("raw job running the code with python -c", f"{f['job_bare']:.2f} s")
    table.add_row(
        "serve: plugin endpoint req/s (p50)", f"{f['serve_plugin_rps']:,.0f} ({f['serve_plugin_p50'] * 1e3:.1f} ms)"
    )
    table.add_row(
        "serve: bare deployment req/s (p50)", f"{f['serve_bare_rps']:,.0f} ({f['serve_bare_p50'] * 1e3:.1f} ms)"
    )
    console.print(table)
    verdicts = Table(title="targets")
    for column in ("ratio", "value", "target", "verdict"):
        verdicts.add_column(column, justify="right")
    checks = [
        (
            "job latency / task latency",
            f["job_plugin"] / f["task_p50"],
            ">= 20x",
            f["job_plugin"] / f["task_p50"] >= 20,
        ),
        (
            "plugin job / raw submit (same entrypoint)",
            f["job_plugin"] / f["job_raw"],
            "<= 1.1x",
            f["job_plugin"] / f["job_raw"] <= 1.1,
        ),
        (
            "plugin endpoint / bare deployment req/s",
            f["serve_plugin_rps"] / f["serve_bare_rps"],
            ">= 0.9x",
            f["serve_plugin_rps"] / f["serve_bare_rps"] >= 0.9,
        ),
    ]
    for name, value, target, ok in checks:
        verdicts.add_row(name, f"{value:.2f}x", target, "PASS" if ok else "MISS")
    verdicts.add_row("plugin job / bare python -c job (reference)", f"{f['job_plugin'] / f['job_bare']:.2f}x", "", "")
    console.print(verdicts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    with private_ray() as (context, _):
        from ray import serve

        dashboard = f"http://{context.dashboard_url}"

        port = free_port()
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        rr.connect()
        with console.status("task and job latency"):
            figures = measure_task_and_jobs(dashboard, args.rounds)
        with console.status("serve throughput"):
            figures |= measure_serve(f"http://127.0.0.1:{port}", dashboard, args.rounds, args.seconds, args.concurrency)
    report(figures)
    save(figures, RESULTS)


if __name__ == "__main__":
    main()
