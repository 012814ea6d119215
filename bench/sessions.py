"""Agent sessions benchmark, all in one run on one local cluster, each figure beside its baseline:

* create -> first result, shared and dedicated (the example chat agent), p50/p95;
* a turn through the driver API vs the same agent in a bare Ray actor; through the façade vs a Serve endpoint;
* agent yield -> client latency over the agent socket, the façade's NDJSON stream, and the driver (the host's own
  Ray stream, i.e. the agent called directly in its host); chunks per second through 1 and 50 sockets;
  reconnect-and-resume time;
* pause + resume of a 10 KB and a 10 MB state;
* density: active shared sessions of the example agent (memory of their hosts), and paused sessions seeded in bulk
  (list/get latency before and after).

    python -m bench.sessions [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket as sockets
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import psutil
import ray
from rich.console import Console
from rich.table import Table

import ray_runtime as rr
from bench._cluster import private_ray, save
from bench.api import percentile, start_facade
from ray_runtime._net import free_port
from ray_runtime.client import AgentSocket, AsyncRuntimeClient, ClientConfig, RuntimeClient
from ray_runtime.keys import KEYS_NAMESPACE, new_key
from ray_runtime.models.api import Scope
from ray_runtime.sessions.manager import AsyncSessions, Sessions, TemplateSource

console = Console()
ROOT = Path(__file__).resolve().parents[1]
CHAT = ROOT / "plugins" / "chat"
STAMPS = ROOT / "bench" / "plugins" / "stamps"
RESULTS = Path(".bench/sessions.json")
GB = 2**30


def timed(call: Any) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def summary(values: list[float]) -> dict[str, float]:
    return {"p50": statistics.median(values), "p95": percentile(values, 0.95), "p99": percentile(values, 0.99)}


# ------------------------------------------------------------------------------------------------ baselines


@ray.remote(num_cpus=0.01)
class BareChat:
    """The example chat agent in a plain Ray actor: the cheapest way to hold it on a cluster."""

    def __init__(self) -> None:
        self.agent = chat_agent("ses_bare")

    def invoke(self, text: str) -> Any:
        return run_chat_turn(self.agent, text)


def chat_agent(session_id: str) -> Any:
    """The example chat agent, built as a session host builds it (this machine only: the plugin is on its disk)."""
    sys.path.insert(0, str(CHAT))
    from chat import ChatAgent, ChatConfig

    from ray_runtime.sessions.template import SessionContext

    return ChatAgent(ChatConfig(), SessionContext(session_id, "bench", "chat.assistant", "0"))


def run_chat_turn(agent: Any, text: str) -> Any:
    from ray_runtime.sessions import TurnRequest
    from ray_runtime.sessions.template import TurnContext

    turn = agent.invoke(TurnRequest(text=text), TurnContext(agent.ctx, "turn"))
    try:
        while True:
            next(turn)
    except StopIteration as done:
        return done.value


def serve_chat(port: int) -> str:
    """The same agent behind a Serve endpoint; its URL."""
    from ray import serve

    @serve.deployment(ray_actor_options={"num_cpus": 0.01})
    class ServeChat:
        def __init__(self) -> None:
            self.agent = chat_agent("ses_serve")

        async def __call__(self, request: Any) -> Any:
            body = await request.json()
            return {"result": run_chat_turn(self.agent, body["text"])}

    serve.start(http_options={"host": "127.0.0.1", "port": port})  # unless the façade started Serve already
    serve.run(ServeChat.bind(), name="bench-chat", route_prefix="/bench-chat")
    proxy = serve.context._get_global_client().http_config
    return f"http://127.0.0.1:{proxy.port}/bench-chat"


# ------------------------------------------------------------------------------------------------ measures


def create_to_first_result(sessions: Sessions, template: str, n: int) -> list[float]:
    times = []
    for _ in range(n):
        started = time.perf_counter()
        session = sessions.create(template)
        sessions.invoke(session.id, "hello")
        times.append(time.perf_counter() - started)
        sessions.close(session.id)
    return times


def invoke_overheads(sessions: Sessions, facade: str, key: str, serve_url: str, rounds: int) -> dict[str, float]:
    """Median turn time through each path, interleaved rounds of 20 calls; medians of the rounds."""
    bare = BareChat.remote()
    ray.get(bare.invoke.remote("warm"))
    driver_session = sessions.create("chat.assistant")
    http = httpx.Client(base_url=facade, headers={"Authorization": f"Bearer {key}"}, timeout=60)
    facade_session = http.post("/api/v1/sessions", json={"template": "chat.assistant"}).json()["id"]
    serve_http = httpx.Client(timeout=60)
    paths = {
        "bare_actor": lambda: ray.get(bare.invoke.remote("What is 6 * 7?")),
        "driver": lambda: sessions.invoke(driver_session.id, "What is 6 * 7?"),
        "facade": lambda: http.post(
            f"/api/v1/sessions/{facade_session}/invoke", json={"text": "What is 6 * 7?"}
        ).raise_for_status(),
        "serve": lambda: serve_http.post(serve_url, json={"text": "What is 6 * 7?"}).raise_for_status(),
    }
    for call in paths.values():
        for _ in range(10):
            call()  # warm-up
    rounds_of: dict[str, list[float]] = {name: [] for name in paths}
    for _ in range(rounds):
        for name, call in paths.items():
            rounds_of[name].append(statistics.median(timed(call) for _ in range(20)))
    sessions.close(driver_session.id)
    http.delete(f"/api/v1/sessions/{facade_session}")
    ray.kill(bare)
    return {f"invoke_{name}": statistics.median(values) for name, values in rounds_of.items()}


def stamp_latencies(texts: list[tuple[str, float]]) -> list[float]:
    return [received - float(stamp) for text, received in texts for stamp in text.split()]


def stream_latencies(sessions: Sessions, facade: str, key: str, rounds: int) -> dict[str, list[float]]:
    """Yield -> client over the socket, the façade's NDJSON stream and the driver's Ray stream; interleaved."""
    turn = {"chunks": 40, "interval_s": 0.02}
    samples: dict[str, list[float]] = {"socket": [], "ndjson": [], "driver": []}
    with RuntimeClient(facade, key) as client:
        session = client.create_session("stamps.shared")
        with session.socket() as socket:
            socket.send_message(data={"chunks": 5}).wait()
            for _ in range(rounds):
                received: list[tuple[str, float]] = []
                for event in socket.send_message(data=turn):
                    received.append((event.text, time.time()))
                samples["socket"] += stamp_latencies(received)

                received = []
                with client._http.stream(**client._turn_stream(session.id, {"data": turn})) as reply:
                    for line in reply.iter_lines():
                        message = json.loads(line)
                        if message["type"] == "event":
                            received.append((message["event"]["text"], time.time()))
                samples["ndjson"] += stamp_latencies(received)

                received = []
                for message in sessions.invoke_stream(session.id, {"data": turn}):
                    if message.type == "event":
                        received.append((message.event.text, time.time()))
                samples["driver"] += stamp_latencies(received)
        session.close()
    return samples


async def chunk_rates(facade: str, key: str, sockets_n: int, chunks: int) -> float:
    """Chunks per second through ``sockets_n`` sockets at once, each on its own session."""
    async with AsyncRuntimeClient(facade, key) as client:
        sessions = await asyncio.gather(*(client.create_session("stamps.shared") for _ in range(sockets_n)))
        opened = [await s.socket().connect() for s in sessions]
        warm = await asyncio.gather(*(s.send_message(data={"chunks": 5}) for s in opened))
        await asyncio.gather(*(reply.wait() for reply in warm))
        started = time.perf_counter()
        replies = await asyncio.gather(*(s.send_message(data={"chunks": chunks}) for s in opened))
        await asyncio.gather(*(reply.wait() for reply in replies))
        elapsed = time.perf_counter() - started
        for s in opened:
            await s.close()
        await asyncio.gather(*(s.close() for s in sessions))
    return sockets_n * chunks / elapsed


def reconnect_times(facade: str, key: str, n: int) -> list[float]:
    """From a dropped TCP connection to the session's status on the new one (replay follows it)."""
    config = ClientConfig(backoff_s=0.0, reconnect_for_s=30)
    reconnected, waiting = threading.Event(), threading.Event()
    times = []

    def on_status(_: Any) -> None:
        if waiting.is_set():  # no turn runs meanwhile: a status now is the new connection's first message
            reconnected.set()

    with RuntimeClient(facade, key, config=config) as client:
        session = client.create_session("stamps.shared")
        with AgentSocket(client, session.id, on_status=on_status) as socket:
            for _ in range(n):
                socket.send_message(data={"chunks": 2}).wait()
                reconnected.clear()
                waiting.set()
                started = time.perf_counter()
                socket._ws.socket.shutdown(sockets.SHUT_RDWR)
                assert reconnected.wait(30), "the socket did not come back"
                times.append(time.perf_counter() - started)
                waiting.clear()
        session.close()
    return times


def pause_resume_times(sessions: Sessions, state_bytes: int, n: int) -> list[float]:
    session = sessions.create("stamps.shared", config={"state_bytes": state_bytes})
    sessions.invoke(session.id, {"data": {"chunks": 1}})
    times = []
    for _ in range(n):
        started = time.perf_counter()
        sessions.pause(session.id)
        sessions.resume(session.id)
        times.append(time.perf_counter() - started)
    assert sessions.get(session.id).checkpoint_bytes > state_bytes
    assert sessions.invoke(session.id, {"data": {"chunks": 1}}).result["turns"] == 2  # its memory came back
    sessions.close(session.id)
    return times


def host_memory(dashboard: str, tenant: str, template: str) -> tuple[int, int]:
    """The session hosts of ``template`` for ``tenant``: how many, and their resident memory together."""
    from ray.util.state import list_actors

    prefix = f"rr-pool:{tenant}:{template}:"
    alive = list_actors(address=dashboard, filters=[("state", "=", "ALIVE")], limit=10_000)
    hosts = [a for a in alive if a.name.startswith(prefix)]
    return len(hosts), sum(psutil.Process(a.pid).memory_info().rss for a in hosts)


async def active_density(sessions: AsyncSessions, dashboard: str, count: int) -> dict[str, float]:
    """``count`` active sessions of the example agent, each after one turn; their hosts' memory."""
    started = time.perf_counter()
    made: list[Any] = []
    for start in range(0, count, 100):
        batch = await asyncio.gather(*(sessions.create("chat.assistant") for _ in range(min(100, count - start))))
        await asyncio.gather(*(sessions.invoke(s.id, "My name is Ada") for s in batch))
        made += batch
    elapsed = time.perf_counter() - started
    answers = await asyncio.gather(*(sessions.invoke(s.id, "What is my name?") for s in made[:: max(1, count // 50)]))
    assert all("Ada" in a.result["answer"] for a in answers)
    hosts, rss = host_memory(dashboard, "bench", "chat.assistant")
    await asyncio.gather(*(sessions.close(s.id) for s in made))
    per_session = rss / count
    return {
        "active_sessions": count,
        "active_hosts": hosts,
        "active_rss_gb": rss / GB,
        "active_create_s": elapsed,
        "active_per_8gb": 8 * GB / per_session,
    }


def paused_density(sessions: Sessions, count: int, reads: int) -> dict[str, float]:
    """List and get p50 with a few sessions, then after ``count`` paused ones are seeded in bulk."""
    probe = sessions.create("stamps.shared")
    sessions.import_paused("stamps.shared", ({"metadata": {"n": -n}} for n in range(200)))  # full pages before too

    def read_latency() -> tuple[float, float]:
        listing = [timed(lambda: sessions.list(limit=50)) for _ in range(reads)]
        getting = [timed(lambda: sessions.get(probe.id)) for _ in range(reads)]
        return statistics.median(listing), statistics.median(getting)

    list_before, get_before = read_latency()
    started = time.perf_counter()
    ids = sessions.import_paused("stamps.shared", ({"metadata": {"n": n}} for n in range(count)))
    seeded_s = time.perf_counter() - started
    assert len(ids) == count
    list_after, get_after = read_latency()
    sessions.close(probe.id)
    return {
        "paused_sessions": count,
        "paused_seed_s": seeded_s,
        "list_before": list_before,
        "list_after": list_after,
        "get_before": get_before,
        "get_after": get_after,
    }


# ------------------------------------------------------------------------------------------------ report


def report(f: dict[str, Any]) -> None:
    ms = 1e3
    table = Table(title="agent sessions (one run; each figure beside its baseline)")
    for column in ("measure", "value", "baseline", "ratio / target", "verdict"):
        table.add_column(column, justify="right")

    def row(name: str, value: str, baseline: str, target: str, ok: bool) -> None:
        table.add_row(name, value, baseline, target, "PASS" if ok else "MISS")

    shared, dedicated = f["create_shared"], f["create_dedicated"]
    row(
        "create → first result, shared",
        f"p50 {shared['p50'] * ms:.0f} ms, p95 {shared['p95'] * ms:.0f} ms",
        "",
        "p50 ≤ 100 ms",
        shared["p50"] <= 0.1,
    )
    row(
        "create → first result, dedicated",
        f"p50 {dedicated['p50'] * ms:.0f} ms, p95 {dedicated['p95'] * ms:.0f} ms",
        "",
        "p50 ≤ 1.5 s",
        dedicated["p50"] <= 1.5,
    )
    driver = f["invoke_driver"] / f["invoke_bare_actor"]
    row(
        "turn, driver API",
        f"{f['invoke_driver'] * ms:.2f} ms",
        f"bare actor {f['invoke_bare_actor'] * ms:.2f} ms",
        f"{driver:.2f}x (≤ 1.5x)",
        driver <= 1.5,
    )
    facade = f["invoke_facade"] / f["invoke_serve"]
    row(
        "turn, façade HTTP",
        f"{f['invoke_facade'] * ms:.2f} ms",
        f"Serve endpoint {f['invoke_serve'] * ms:.2f} ms",
        f"{facade:.2f}x (≤ 1.2x)",
        facade <= 1.2,
    )
    socket, ndjson, direct = f["stream_socket"], f["stream_ndjson"], f["stream_driver"]
    row(
        "yield → socket client",
        f"p50 {socket['p50'] * ms:.2f} ms, p99 {socket['p99'] * ms:.2f} ms",
        f"NDJSON p50 {ndjson['p50'] * ms:.2f} ms",
        f"{socket['p50'] / ndjson['p50']:.2f}x (≤ 1.1x)",
        socket["p50"] <= 1.1 * ndjson["p50"],
    )
    added = socket["p50"] - direct["p50"]
    row(
        "socket's added latency",
        f"{added * ms:.2f} ms",
        f"driver (host's stream) p50 {direct['p50'] * ms:.2f} ms",
        "≤ 5 ms",
        added <= 0.005,
    )
    row("yield → driver client", f"p50 {direct['p50'] * ms:.2f} ms", "", "p50 ≤ 10 ms", direct["p50"] <= 0.01)
    row("chunks/s, 1 socket", f"{f['chunks_1']:.0f}", "", "", True)
    row("chunks/s, 50 sockets", f"{f['chunks_50']:.0f}", "", "", True)
    row("reconnect + resume", f"p50 {f['reconnect']['p50'] * ms:.1f} ms", "", "", True)
    small, big = f["pause_resume_10kb"], f["pause_resume_10mb"]
    row("pause + resume, 10 KB", f"p50 {small['p50'] * ms:.0f} ms", "", "≤ 50 ms", small["p50"] <= 0.05)
    row("pause + resume, 10 MB", f"p50 {big['p50'] * ms:.0f} ms", "", "≤ 1 s", big["p50"] <= 1.0)
    row(
        f"active shared sessions ({f['active_sessions']})",
        f"{f['active_rss_gb']:.2f} GB in {f['active_hosts']} hosts",
        f"→ {f['active_per_8gb']:.0f} in 8 GB",
        "≥ 2,000 in 8 GB",
        f["active_per_8gb"] >= 2000,
    )
    list_ratio, get_ratio = f["list_after"] / f["list_before"], f["get_after"] / f["get_before"]
    row(
        f"paused sessions ({f['paused_sessions']:,}, seeded in {f['paused_seed_s']:.0f} s)",
        f"list {f['list_after'] * ms:.2f} ms, get {f['get_after'] * ms:.2f} ms",
        f"before: list {f['list_before'] * ms:.2f} ms, get {f['get_before'] * ms:.2f} ms",
        f"{list_ratio:.2f}x, {get_ratio:.2f}x (≤ 1.2x)",
        list_ratio <= 1.2 and get_ratio <= 1.2,
    )
    console.print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="Smaller counts (a smoke run).")
    args = parser.parse_args()
    quick = args.quick
    with private_ray(num_cpus=8) as (context, temp):
        plugins = Path(temp) / "plugins"
        plugins.mkdir()
        for folder in (CHAT, STAMPS):
            (plugins / folder.name).symlink_to(folder)
        process = None
        figures: dict[str, Any] = {}
        try:
            coord = rr.connect(tenant="bench")
            key, record = new_key("bench", Scope.ADMIN, "bench")
            rr.connect().kv.put(KEYS_NAMESPACE, record.key_id, record.model_dump(mode="json"))
            templates = TemplateSource(plugins)
            sessions = Sessions(coord.session_registry, templates)
            process, facade = start_facade(context.address_info["address"], {}, "--plugins-dir", str(plugins))
            with console.status("Serve baseline"):
                serve_url = serve_chat(free_port())
            with console.status("create → first result"):
                create_to_first_result(sessions, "chat.assistant", 3)  # the pool's first host
                figures["create_shared"] = summary(
                    create_to_first_result(sessions, "chat.assistant", 10 if quick else 40)
                )
                figures["create_dedicated"] = summary(
                    create_to_first_result(sessions, "chat.private", 3 if quick else 8)
                )
            with console.status("turn overheads"):
                figures |= invoke_overheads(sessions, facade, key, serve_url, 3 if quick else 10)
            with console.status("stream latency"):
                streams = stream_latencies(sessions, facade, key, 2 if quick else 8)
                figures |= {f"stream_{name}": summary(values) for name, values in streams.items()}
            with console.status("chunks per second"):
                figures["chunks_1"] = asyncio.run(chunk_rates(facade, key, 1, 2000 if quick else 10_000))
                figures["chunks_50"] = asyncio.run(chunk_rates(facade, key, 50, 200 if quick else 1000))
            with console.status("reconnect and resume"):
                figures["reconnect"] = summary(reconnect_times(facade, key, 5 if quick else 20))
            with console.status("pause and resume"):
                figures["pause_resume_10kb"] = summary(pause_resume_times(sessions, 10_000, 5 if quick else 15))
                figures["pause_resume_10mb"] = summary(pause_resume_times(sessions, 10 * 2**20, 3 if quick else 7))
            with console.status("active sessions"):
                async_sessions = AsyncSessions(coord.aio.session_registry, templates)
                dashboard = f"http://{context.dashboard_url}"
                figures |= asyncio.run(active_density(async_sessions, dashboard, 300 if quick else 2000))
            with console.status("paused sessions"):
                figures |= paused_density(sessions, 10_000 if quick else 100_000, 50 if quick else 200)
        finally:
            console.print_json(json.dumps(figures))  # what was measured, also when a stage failed
            if process is not None:
                process.terminate()
    report(figures)
    save(figures, RESULTS)


if __name__ == "__main__":
    main()
