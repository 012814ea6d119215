"""Façade benchmark, all in one run on one local cluster:

* log line -> client latency (median, p95) through the façade's WebSocket and HTTP streams, and through Ray's
  ``JobSubmissionClient.tail_job_logs``, all three following the same jobs at the same time;
* ``GET job`` and ``list jobs`` latency through the façade vs the dashboard's own REST API.

    python -m bench.api [--jobs 3] [--lines 50] [--requests 200]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import websockets
from rich.console import Console
from rich.table import Table

import ray_runtime as rr
from bench._cluster import private_ray, save
from ray_runtime._net import free_port
from ray_runtime.api.dashboard import ray_auth_headers
from ray_runtime.client import RuntimeClient
from ray_runtime.keys import KEYS_NAMESPACE, new_key
from ray_runtime.models.api import Scope

console = Console()
RESULTS = Path(".bench/api.json")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def stamped_job(lines: int) -> str:
    return (
        f"python -c \"import time\nfor i in range({lines}):\n    print(f'STAMP {{time.time():.6f}}', flush=True)\n"
        '    time.sleep(0.1)"'
    )


def latencies_of(text: str, received_at: float) -> list[float]:
    return [received_at - float(line.split()[1]) for line in text.splitlines() if line.startswith("STAMP ")]


async def follow_ws(url: str, headers: dict[str, str], out: list[float]) -> None:
    async with websockets.connect(url, additional_headers=headers, open_timeout=60, max_size=None) as ws:
        async for message in ws:
            frame = json.loads(message)
            if frame["type"] == "lines":
                out.extend(latencies_of(frame["data"], time.time()))
            elif frame["type"] != "heartbeat":
                return


async def follow_http(url: str, headers: dict[str, str], out: list[float]) -> None:
    async with httpx.AsyncClient(timeout=None) as client, client.stream("GET", url, headers=headers) as reply:
        async for line in reply.aiter_lines():
            frame = json.loads(line)
            if frame["type"] == "lines":
                out.extend(latencies_of(frame["data"], time.time()))
            elif frame["type"] != "heartbeat":
                return


async def follow_ray(dashboard: str, submission_id: str, out: list[float]) -> None:
    from ray.job_submission import JobSubmissionClient

    async for chunk in JobSubmissionClient(dashboard).tail_job_logs(submission_id):
        out.extend(latencies_of(chunk, time.time()))


async def follow_all(
    ws_url: str, http_url: str, headers: dict[str, str], dashboard: str, submission_id: str, samples: dict
) -> None:
    await asyncio.gather(
        follow_ws(ws_url, headers, samples["ws"]),
        follow_http(http_url, headers, samples["http"]),
        follow_ray(dashboard, submission_id, samples["ray"]),
    )


def measure_tails(facade: str, key: str, dashboard: str, jobs: int, lines: int) -> dict[str, list[float]]:
    from ray.job_submission import JobSubmissionClient

    client = JobSubmissionClient(dashboard)
    headers = {"Authorization": f"Bearer {key}"}
    samples: dict[str, list[float]] = {"ws": [], "http": [], "ray": []}
    for _ in range(jobs):
        submission_id = client.submit_job(entrypoint=stamped_job(lines), metadata={"ray_runtime.tenant": "bench"})
        ws_url = f"{facade.replace('http://', 'ws://')}/api/v1/jobs/{submission_id}/logs/ws"
        http_url = f"{facade}/api/v1/jobs/{submission_id}/logs/stream"

        asyncio.run(follow_all(ws_url, http_url, headers, dashboard, submission_id, samples))
    return samples


def median_latency(client: httpx.Client, path: str, n: int) -> float:
    times = []
    for _ in range(n):
        started = time.perf_counter()
        client.get(path).raise_for_status()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def measure_requests(
    facades: dict[str, str], key: str, dashboard: str, finished: str, running: str, n: int
) -> dict[str, float]:
    """Median latency of the same reads through each façade and straight from the dashboard, interleaved."""
    clients = {
        name: httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=60)
        for name, url in facades.items()
    }
    direct = httpx.Client(base_url=dashboard, headers=ray_auth_headers(), timeout=60)
    reads = {
        "get_finished": (f"/api/v1/jobs/{finished}", f"/api/jobs/{finished}"),
        "get_running": (f"/api/v1/jobs/{running}", f"/api/jobs/{running}"),
        "list": ("/api/v1/jobs", "/api/jobs/"),
    }
    figures: dict[str, float] = {}
    for read, (ours, theirs) in reads.items():
        for client in clients.values():
            median_latency(client, ours, 10)  # warm-up
        samples: dict[str, list[float]] = {name: [] for name in [*clients, "dashboard"]}
        for _ in range(max(1, n // 20)):  # interleaved rounds
            for name, client in clients.items():
                samples[name].append(median_latency(client, ours, 20))
            samples["dashboard"].append(median_latency(direct, theirs, 20))
        for name, values in samples.items():
            figures[f"{read}_{name}"] = statistics.median(values)
    return figures


def measure_client_overhead(facade: str, key: str, finished: str, n: int) -> dict[str, float]:
    """The Python client's cost over a bare httpx GET of the same route (request building, typed parsing)."""
    raw = httpx.Client(base_url=facade, headers={"Authorization": f"Bearer {key}"}, timeout=60)
    samples: dict[str, list[float]] = {"raw": [], "client": []}
    with RuntimeClient(facade, key) as client:
        for _ in range(max(1, n // 20)):
            samples["raw"].append(median_latency(raw, f"/api/v1/jobs/{finished}", 20))
            times = []
            for _ in range(20):
                started = time.perf_counter()
                client.get_job(finished)
                times.append(time.perf_counter() - started)
            samples["client"].append(statistics.median(times))
    return {f"client_get_{name}": statistics.median(values) for name, values in samples.items()}


def start_facade(address: str, env: dict[str, str], *args: str) -> tuple[subprocess.Popen[str], str]:
    """A façade process on a free loopback port (``args``: more ``ray-runtime api`` options); its URL when ready."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "ray_runtime", "api", "--port", str(port), "--address", address, *args],
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health/ready", timeout=5).status_code == 200:
                return process, url
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    process.terminate()
    raise RuntimeError("the façade did not start")


def report(f: dict[str, Any]) -> None:
    table = Table(title="log line -> client latency (same jobs, followed at once)")
    for column in ("path", "median", "p95", "samples"):
        table.add_column(column, justify="right")
    for name, label in (("ws", "façade WebSocket"), ("http", "façade HTTP stream"), ("ray", "Ray tail_job_logs")):
        table.add_row(
            label, f"{f[f'{name}_p50'] * 1e3:.1f} ms", f"{f[f'{name}_p95'] * 1e3:.1f} ms", str(f[f"{name}_n"])
        )
    console.print(table)
    requests = Table(title="read latency (medians): façade with its default caching, without any, and the dashboard")
    for column in ("read", "façade", "façade, no cache", "dashboard", "ratio", "ratio, no cache"):
        requests.add_column(column, justify="right")
    for read, label in (
        ("get_finished", "GET finished job"),
        ("get_running", "GET running job"),
        ("list", "list jobs"),
    ):
        cached, cold, base = f[f"{read}_cached"], f[f"{read}_uncached"], f[f"{read}_dashboard"]
        requests.add_row(
            label,
            f"{cached * 1e3:.1f} ms",
            f"{cold * 1e3:.1f} ms",
            f"{base * 1e3:.1f} ms",
            f"{cached / base:.2f}x",
            f"{cold / base:.2f}x",
        )
    console.print(requests)
    verdicts = Table(title="targets")
    for column in ("target", "value", "verdict"):
        verdicts.add_column(column, justify="right")
    best = min(f["ws_p50"], f["http_p50"])
    checks = [
        ("tail median <= 50 ms (WebSocket)", f"{f['ws_p50'] * 1e3:.1f} ms", f["ws_p50"] <= 0.05),
        ("tail median <= 50 ms (HTTP)", f"{f['http_p50'] * 1e3:.1f} ms", f["http_p50"] <= 0.05),
        ("Ray's tail / façade tail >= 30x", f"{f['ray_p50'] / best:.0f}x", f["ray_p50"] / best >= 30),
    ]
    for read, label in (
        ("get_finished", "GET finished job"),
        ("get_running", "GET running job"),
        ("list", "list jobs"),
    ):
        ratio = f[f"{read}_cached"] / f[f"{read}_dashboard"]
        checks.append((f"façade {label} <= 1.3x dashboard", f"{ratio:.2f}x", ratio <= 1.3))
    overhead = f["client_get_client"] / f["client_get_raw"]
    console.print(
        f"RuntimeClient.get_job {f['client_get_client'] * 1e3:.2f} ms vs bare httpx GET "
        f"{f['client_get_raw'] * 1e3:.2f} ms of the same route"
    )
    checks.append(("client / bare httpx <= 1.15x", f"{overhead:.2f}x", overhead <= 1.15))
    for name, value, ok in checks:
        verdicts.add_row(name, value, "PASS" if ok else "MISS")
    console.print(verdicts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=3)
    parser.add_argument("--lines", type=int, default=50)
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    with private_ray() as (context, _):
        dashboard = f"http://{context.dashboard_url}"
        process = None
        processes: list[subprocess.Popen[str]] = []
        try:
            coord = rr.connect()
            key, record = new_key("bench", Scope.ADMIN, "bench", run_code=True)  # it submits raw entrypoints
            coord.kv.put(KEYS_NAMESPACE, record.key_id, record.model_dump(mode="json"))
            process, facade = start_facade(context.address_info["address"], {})
            no_cache = {"RAY_RUNTIME_API_FINISHED_JOB_CACHE_S": "0", "RAY_RUNTIME_API_JOB_LIST_CACHE_S": "0"}
            uncached_process, uncached = start_facade(context.address_info["address"], no_cache)
            processes.append(uncached_process)
            with console.status("following logs three ways"):
                samples = measure_tails(facade, key, dashboard, args.jobs, args.lines)
            figures: dict[str, Any] = {}
            for name, values in samples.items():
                figures |= {
                    f"{name}_p50": statistics.median(values),
                    f"{name}_p95": percentile(values, 0.95),
                    f"{name}_n": len(values),
                }
            with console.status("request latency"):
                auth = {"Authorization": f"Bearer {key}"}
                finished = httpx.post(
                    f"{facade}/api/v1/jobs",
                    headers=auth,
                    json={"plugin": "hello", "action": "greet", "params": {"name": "bench"}},
                    timeout=120,
                ).json()["submission_id"]
                running = httpx.post(
                    f"{facade}/api/v1/jobs", headers=auth, json={"entrypoint": "sleep 600"}, timeout=120
                ).json()["submission_id"]
                while httpx.get(f"{facade}/api/v1/jobs/{finished}", headers=auth, timeout=60).json()["run"] is None:
                    time.sleep(0.2)
                facades = {"cached": facade, "uncached": uncached}
                figures |= measure_requests(facades, key, dashboard, finished, running, args.requests)
                figures |= measure_client_overhead(facade, key, finished, args.requests)
        finally:
            for running_process in [process, *processes]:
                if running_process is not None:
                    running_process.terminate()
    report(figures)
    save(figures, RESULTS)


if __name__ == "__main__":
    main()
