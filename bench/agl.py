"""Agent Lightning 1.0 on ray_runtime, beside AGL 1.0.2's own server measured in the same run:

* rollout throughput: 1,000 rollouts created and read back in AGL's own call pattern (a batch POST, then per rollout
  two PATCHes, GETs, the terminal page, a DELETE) from 16 concurrent clients, façade (durable) vs AGL's server
  (in memory), median of ``--runs``;
* the LLM proxy's overhead over calling the model server directly (p50), the façade's and AGL's own proxy;
* events appended per second (100 KB each), and the p99 of a worker's claim from the coordinator while 200 events/s
  of 100 KB flow beside it (from a producer process of their own) vs without, for a worker claiming back to back
  and one claiming every 10 ms, and vs beside plain processes
  burning the CPU the events took (façade and producer): what any work of that size costs a claim on these cores;
  the coordinator's CPU and journal bytes over the events alone.

    python -m bench.agl [--rollouts 1000] [--clients 16] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import psutil
from rich.console import Console
from rich.table import Table

import ray_runtime as rr
from bench._cluster import private_ray, save
from bench.api import percentile, start_facade
from ray_runtime._net import free_port
from ray_runtime.keys import KEYS_NAMESPACE, new_key
from ray_runtime.models.api import Scope

console = Console()
RESULTS = Path(".bench/agl.json")
MODEL = "Qwen/Qwen2.5-7B-Instruct"
REFERENCE_KEY = "bench-reference"
PACED_EVERY_S = 0.01
_REFERENCE = f"""
import uvicorn
from agentlightning.server.app import create_app
config = {{"key": {REFERENCE_KEY!r}, "default_proxy": {{"model_name": {MODEL!r}, "include_log_probs": True,
          "include_routed_experts": False, "train": {{"temperature": 1}}, "val": {{"temperature": 0.7}}}}}}
uvicorn.run(create_app(config), host="127.0.0.1", port=int(__import__("sys").argv[1]), log_level="warning")
"""
_UPSTREAM = """
import sys, uvicorn
sys.path.insert(0, ".")
from tests.agl_upstream import model_app
uvicorn.run(model_app(), host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
"""


def serve(code: str) -> tuple[subprocess.Popen[bytes], str]:
    """A uvicorn server of ``code`` in a process of its own on a free loopback port; its URL once it answers."""
    port = free_port()
    process = subprocess.Popen([sys.executable, "-c", code, str(port)], stdout=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=2)
            return process, url
        except httpx.TransportError:
            time.sleep(0.1)
    process.terminate()
    raise RuntimeError("a server did not start")


# ------------------------------------------------------------------------------------------- throughput


async def one_client(client: httpx.AsyncClient, ids: list[str]) -> None:
    """AGL's rollout manager's pattern for its share of a batch, with a controller's PATCHes in between."""
    (await client.post("/api/rollouts", json=[{"rollout_id": r, "input": {"n": r}} for r in ids])).raise_for_status()
    for rollout_id in ids:
        running = {"status": {"state": "running", "last_attempt_id": "0"}}
        (await client.patch(f"/api/rollouts/{rollout_id}", json=running)).raise_for_status()
        (await client.get(f"/api/rollouts/{rollout_id}")).raise_for_status()
        done = {"status": {"state": "succeeded"}}
        (await client.patch(f"/api/rollouts/{rollout_id}", json=done)).raise_for_status()
        (await client.get(f"/api/rollouts/{rollout_id}")).raise_for_status()
    (await client.get("/api/rollouts/terminal", params={"after": 0, "limit": 1000})).raise_for_status()
    for rollout_id in ids:
        (await client.delete(f"/api/rollouts/{rollout_id}")).raise_for_status()


async def rollouts_per_s(base_url: str, key: str, rollouts: int, clients: int, tag: str) -> float:
    limits = httpx.Limits(max_connections=clients)
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=120, limits=limits) as client:
        ids = [f"{tag}-{i}" for i in range(rollouts)]
        shares = [ids[i::clients] for i in range(clients)]
        started = time.perf_counter()
        await asyncio.gather(*(one_client(client, share) for share in shares))
        return rollouts / (time.perf_counter() - started)


# ---------------------------------------------------------------------------------------------- proxy


def call_p50(url: str, key: str | None, n: int) -> float:
    body = {"model": MODEL, "messages": [{"role": "user", "content": "what is 2+2?"}], "max_tokens": 8}
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    with httpx.Client(headers=headers, timeout=60) as client:
        client.post(url, json=body).raise_for_status()  # warm the connection
        times = []
        for _ in range(n):
            started = time.perf_counter()
            client.post(url, json=body).raise_for_status()
            times.append(time.perf_counter() - started)
    return statistics.median(times)


def proxy_overheads(facade: str, key: str, reference: str, upstream: str, n: int, runs: int) -> dict[str, float]:
    """Median over ``runs`` of each path's p50, measured in turns so drift hits all three alike."""
    path = "/proxy/rollout/p1/attempt/0/mode/train/openai/v1/chat/completions"
    for base, credential in ((f"{facade}/agl", key), (reference, REFERENCE_KEY)):
        headers = {"Authorization": f"Bearer {credential}"}
        httpx.post(f"{base}/api/rollouts", json=[{"rollout_id": "p1", "input": 0}], headers=headers)
        httpx.post(f"{base}/api/models", json=[{"model": MODEL, "endpoint": f"{upstream}/v1"}], headers=headers)
    samples: dict[str, list[float]] = {"direct": [], "facade": [], "agl": []}
    for _ in range(runs):
        samples["direct"].append(call_p50(f"{upstream}/v1/chat/completions", None, n))
        samples["facade"].append(call_p50(f"{facade}/agl{path}", key, n))
        samples["agl"].append(call_p50(f"{reference}{path}", REFERENCE_KEY, n))
    return {f"proxy_{name}_p50": statistics.median(values) for name, values in samples.items()}


# --------------------------------------------------------------------------------------- events beside claims


def journal_bytes(storage: Path) -> int:
    """The coordinator's journal and snapshots on disk (the event store's own file aside)."""
    return sum(
        p.stat().st_size for p in (storage / "coordinator").rglob("*") if p.is_file() and "agl-events" not in p.name
    )


async def post_events(base: str, key: str, rate: float | None, seconds: float, size: int) -> int:
    """Events of ``size`` bytes over ten rollouts for ``seconds``, at ``rate`` a second (None: as fast as they go,
    eight at once); how many were stored."""
    blob = "x" * size
    posted = 0
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=120) as client:
        rollouts = [f"e{i}" for i in range(10)]
        await client.post("/api/rollouts", json=[{"rollout_id": r, "input": 0} for r in rollouts])
        deadline = time.monotonic() + seconds

        async def poster(lane: int, every_s: float) -> None:
            nonlocal posted
            next_at = time.monotonic()
            n = 0
            while time.monotonic() < deadline:
                event = {"event_type": "blob", "data": {"blob": blob}}
                reply = await client.post(f"/api/rollouts/{rollouts[(lane + n) % 10]}/attempt/0/events", json=event)
                reply.raise_for_status()
                posted += 1
                n += 1
                next_at += every_s
                await asyncio.sleep(max(0.0, next_at - time.monotonic()))

        lanes = 8
        every_s = 0.0 if rate is None else lanes / rate
        await asyncio.gather(*(poster(lane, every_s) for lane in range(lanes)))
    return posted


def events_in_process(base: str, key: str, rate: float | None, seconds: float, size: int) -> int:
    """:func:`post_events` in a process of its own (a producer of its own, not sharing this one's GIL)."""
    return asyncio.run(post_events(base, key, rate, seconds, size))


def burn(share: float, seconds: float, period_s: float = 0.01) -> None:
    """Use ``share`` of a core for ``seconds``: busy for that part of each period, asleep for the rest."""
    deadline = time.monotonic() + seconds
    while (now := time.monotonic()) < deadline:
        busy_until = now + share * period_s
        while time.monotonic() < busy_until:
            pass
        time.sleep(max(0.0, (1 - share) * period_s))


def hog(cores: float, seconds: float) -> int:
    """Two processes that together use ``cores`` of CPU for ``seconds`` (started, then waited for)."""
    spawn = multiprocessing.get_context("spawn")
    burners = [spawn.Process(target=burn, args=(min(1.0, cores / 2), seconds)) for _ in range(2)]
    for burner in burners:
        burner.start()
    for burner in burners:
        burner.join()
    return 0


def claim_latencies(coord: Any, stop: threading.Event, every_s: float = 0.0) -> list[float]:
    """A worker's loop (enqueue one, claim it, complete it) until ``stop``, a round every ``every_s`` (0: back to
    back, the claims alone keeping more than a core busy); each claim's latency."""
    times: list[float] = []
    next_at = time.monotonic()
    while not stop.is_set():
        coord.enqueue("bench-claims", {"n": len(times)})
        started = time.perf_counter()
        [lease] = coord.claim("bench-claims", "w", max_tasks=1)
        times.append(time.perf_counter() - started)
        coord.complete(lease.attempt_id, None)
        if every_s:
            next_at += every_s
            stop.wait(max(0.0, next_at - time.monotonic()))
    return times


def claims_beside(coord: Any, seconds: float, events: Any = None, every_s: float = 0.0) -> tuple[list[float], int]:
    """A worker's claim latencies over ``seconds`` (a round every ``every_s``), alone or while ``events()`` (a
    future's result) flows."""
    stop = threading.Event()
    out: list[list[float]] = []
    worker = threading.Thread(target=lambda: out.append(claim_latencies(coord, stop, every_s)))
    worker.start()
    posted = 0
    if events is None:
        time.sleep(seconds)
    else:
        posted = events()
    stop.set()
    worker.join()
    return out[0], posted


def events_figures(
    coord: Any, facade: str, key: str, storage: Path, seconds: float, runs: int, facade_pid: int
) -> dict[str, Any]:
    base = f"{facade}/agl"
    producer = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))
    producer.submit(events_in_process, base, key, 1, 0.0, 1).result()  # started and warm before measuring
    pids = {"coordinator": coord.info()["pid"], "facade": facade_pid, "producer": producer.submit(os.getpid).result()}

    def flow(rate: float | None) -> int:
        return producer.submit(events_in_process, base, key, rate, seconds, 100_000).result()

    try:
        return _events_figures(coord, storage, seconds, runs, flow, pids)
    finally:
        producer.shutdown()


def _cpu_seconds(pids: dict[str, int]) -> dict[str, float]:
    """CPU seconds each process has used (its threads' user and system time)."""
    used = {}
    for name, pid in pids.items():
        times = psutil.Process(pid).cpu_times()
        used[name] = times.user + times.system
    return used


def _events_figures(
    coord: Any, storage: Path, seconds: float, runs: int, flow: Any, pids: dict[str, int]
) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    rates = [flow(None) / seconds for _ in range(runs)]
    figures["events_per_s_100kb"] = statistics.median(rates)

    def cpu() -> float:
        return coord.info()["cpu"]["process"]

    idle_cpu, events_cpu, journal_growth, posted_total, shares = [], [], [], 0, []
    for _ in range(runs):
        before = cpu()
        time.sleep(seconds)
        idle_cpu.append(cpu() - before)
        before, journal, split = cpu(), journal_bytes(storage), _cpu_seconds(pids)
        posted_total += flow(200)
        events_cpu.append(cpu() - before)
        after = _cpu_seconds(pids)
        shares.append({name: (after[name] - split[name]) / seconds for name in pids})
        journal_growth.append(journal_bytes(storage) - journal)
    figures |= {
        "coordinator_cpu_idle_s": statistics.median(idle_cpu),
        "coordinator_cpu_events_s": statistics.median(events_cpu),
        "journal_growth_bytes": max(journal_growth),
        "events_posted_mb": posted_total * 100_000 / 1e6,
        "cores_at_200_events_per_s": {name: statistics.median(s[name] for s in shares) for name in pids},
    }

    # Two workers: one claiming back to back (more than a core on its own), one whose tasks take 10 ms (a round
    # every 10 ms, what a worker doing work between claims asks of the coordinator).
    for name, every_s in (("", 0.0), ("_paced", PACED_EVERY_S)):
        quiet, flowing, achieved = [], [], []
        for _ in range(runs):
            quiet.append(percentile(claims_beside(coord, seconds, every_s=every_s)[0], 0.99))
            times, posted = claims_beside(coord, seconds, lambda: flow(200), every_s)
            flowing.append(percentile(times, 0.99))
            achieved.append(posted / seconds)
        figures |= {
            f"claim_p99_quiet{name}": statistics.median(quiet),
            f"claim_p99_events{name}": statistics.median(flowing),
            f"events_rate_beside_claims{name}": statistics.median(achieved),
        }
    # The same CPU as the events took (façade and producer), burnt by two plain processes: what any work of that
    # size costs the claims on these cores.
    cores = figures["cores_at_200_events_per_s"]["facade"] + figures["cores_at_200_events_per_s"]["producer"]
    burnt = [percentile(claims_beside(coord, seconds, lambda: hog(cores, seconds))[0], 0.99) for _ in range(runs)]
    figures["claim_p99_cpu_hog"] = statistics.median(burnt)
    return figures


# ------------------------------------------------------------------------------------------------ report


def report(f: dict[str, Any]) -> None:
    table = Table(title="Agent Lightning 1.0: the façade's /agl vs AGL 1.0.2's own server, same run (medians)")
    for column in ("figure", "façade", "AGL's server", "ratio"):
        table.add_column(column, justify="right")
    ratio = f["rollouts_per_s_facade"] / f["rollouts_per_s_agl"]
    table.add_row(
        f"rollouts/s ({f['rollouts']}, {f['clients']} clients)",
        f"{f['rollouts_per_s_facade']:.0f}",
        f"{f['rollouts_per_s_agl']:.0f}",
        f"{ratio:.2f}x",
    )
    direct = f["proxy_direct_p50"]
    table.add_row(
        f"proxy p50 (direct {direct * 1e3:.1f} ms)",
        f"+{(f['proxy_facade_p50'] - direct) * 1e3:.1f} ms",
        f"+{(f['proxy_agl_p50'] - direct) * 1e3:.1f} ms",
        f"{f['proxy_facade_p50'] / f['proxy_agl_p50']:.2f}x",
    )
    console.print(table)
    console.print(
        f"events of 100 KB: {f['events_per_s_100kb']:.0f}/s appended; coordinator CPU over {f['seconds']:.0f} s "
        f"of 200 events/s: {f['coordinator_cpu_events_s']:.2f} s (idle, same length: "
        f"{f['coordinator_cpu_idle_s']:.2f} s); journal growth {f['journal_growth_bytes']} bytes for "
        f"{f['events_posted_mb']:.0f} MB of events"
    )
    claims = f["claim_p99_events"] / f["claim_p99_quiet"]
    cores = f["cores_at_200_events_per_s"]
    console.print(
        f"claim p99: {f['claim_p99_quiet'] * 1e3:.1f} ms quiet, {f['claim_p99_events'] * 1e3:.1f} ms beside "
        f"{f['events_rate_beside_claims']:.0f} events/s of 100 KB ({claims:.2f}x), "
        f"{f['claim_p99_cpu_hog'] * 1e3:.1f} ms beside plain processes burning the same CPU "
        f"({f['claim_p99_cpu_hog'] / f['claim_p99_quiet']:.2f}x); the events took {cores['facade']:.2f} of a core "
        f"in the façade, {cores['producer']:.2f} in the producer, {cores['coordinator']:.3f} in the coordinator"
    )
    paced = f["claim_p99_events_paced"] / f["claim_p99_quiet_paced"]
    console.print(
        f"claim p99 of a worker whose tasks take {PACED_EVERY_S * 1e3:.0f} ms: {f['claim_p99_quiet_paced'] * 1e3:.1f} "
        f"ms quiet, {f['claim_p99_events_paced'] * 1e3:.1f} ms beside {f['events_rate_beside_claims_paced']:.0f} "
        f"events/s of 100 KB ({paced:.2f}x)"
    )
    verdicts = Table(title="targets")
    for column in ("target", "value", "verdict"):
        verdicts.add_column(column, justify="right")
    overhead_ms = (f["proxy_facade_p50"] - direct) * 1e3
    cpu_extra = f["coordinator_cpu_events_s"] - f["coordinator_cpu_idle_s"]
    for name, value, ok in (
        ("rollouts/s >= 0.5x AGL's in-memory server", f"{ratio:.2f}x", ratio >= 0.5),
        ("proxy overhead p50 <= +3 ms", f"+{overhead_ms:.1f} ms", overhead_ms <= 3),
        ("claim p99 beside events <= 1.5x", f"{claims:.2f}x", claims <= 1.5),
        ("coordinator CPU with events - idle <= 0.1 s", f"{cpu_extra:+.2f} s", cpu_extra <= 0.1),
        ("journal growth with events <= 64 KB", f"{f['journal_growth_bytes']} B", f["journal_growth_bytes"] <= 65536),
    ):
        verdicts.add_row(name, value, "PASS" if ok else "MISS")
    console.print(verdicts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rollouts", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--proxy-calls", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument(
        "--events-only", action="store_true", help="only the events figures (the claim p99 beside them)"
    )
    args = parser.parse_args()
    processes: list[subprocess.Popen[Any]] = []
    with private_ray() as (context, _):
        try:
            coord = rr.connect()
            key, record = new_key("bench", Scope.ADMIN, "bench")
            coord.kv.put(KEYS_NAMESPACE, record.key_id, record.model_dump(mode="json"))
            facade_process, facade = start_facade(context.address_info["address"], {})
            processes.append(facade_process)
            reference_process, reference = serve(_REFERENCE)
            upstream_process, upstream = serve(_UPSTREAM)
            processes += [reference_process, upstream_process]
            figures: dict[str, Any] = {"rollouts": args.rollouts, "clients": args.clients, "seconds": args.seconds}
            ours, theirs = [], []
            if args.events_only:
                storage = Path(os.environ["RAY_RUNTIME_STORAGE"])
                figures |= events_figures(coord, facade, key, storage, args.seconds, args.runs, facade_process.pid)
                console.print(figures)
                return
            with console.status("rollouts in AGL's call pattern, the façade and AGL's server in turns"):
                for run in range(args.runs):
                    n, c = args.rollouts, args.clients
                    ours.append(asyncio.run(rollouts_per_s(f"{facade}/agl", key, n, c, f"r{run}")))
                    theirs.append(asyncio.run(rollouts_per_s(reference, REFERENCE_KEY, n, c, f"r{run}")))
            figures["rollouts_per_s_facade"] = statistics.median(ours)
            figures["rollouts_per_s_agl"] = statistics.median(theirs)
            with console.status("the LLM proxy: direct, through the façade, through AGL's server"):
                figures |= proxy_overheads(facade, key, reference, upstream, args.proxy_calls, args.runs)
            with console.status("events of 100 KB, alone and beside a worker's claims"):
                storage = Path(os.environ["RAY_RUNTIME_STORAGE"])
                figures |= events_figures(coord, facade, key, storage, args.seconds, args.runs, facade_process.pid)
        finally:
            for process in processes:
                process.terminate()
                process.wait(timeout=30)
    save(figures, RESULTS)
    report(figures)


if __name__ == "__main__":
    main()
