"""The agent protocol's WebSocket on the real façade and real session hosts: the published schema, turns over the
socket, resuming across a cut connection, bad frames, many sockets, byes, refusals, and a client written from the
schema alone."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
from pathlib import Path

import jsonschema
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync import client as ws_client

from ray_runtime.client import (
    AgentSocket,
    AsyncAgentSocket,
    AsyncRuntimeClient,
    ClientConfig,
    End,
    Event,
    InvocationError,
    RuntimeClient,
    SessionBusyError,
    SessionPausedError,
)
from ray_runtime.models.agent import (
    Bye,
    Cancel,
    Custom,
    Error,
    Ping,
    Pong,
    Progress,
    Status,
    TextChunk,
    ToolCall,
    ToolResult,
    UserMessage,
    client_message_adapter,
    frame,
    protocol_schema,
    server_message_adapter,
)
from ray_runtime.models.agent import (
    End as EndMessage,
)

from ..waiting import async_wait_until
from .netkit import CuttingProxy

ROOT = Path(__file__).resolve().parents[2]
FAST = ClientConfig(retries=2, backoff_s=0.01, backoff_max_s=0.05, reconnect_for_s=30)
CLIENT_MESSAGES = [
    UserMessage(turn_id="t1", text="hi", data={"n": [1, 2]}),
    UserMessage(),
    Cancel(turn_id="t1"),
    Cancel(),
    Ping(nonce="n1"),
]
SERVER_MESSAGES = [
    Status(seq=1, session_id="ses_1", state="active", template="chat.assistant", turn_id="t1"),
    *(
        Event(seq=2, turn_id="t1", event=event)
        for event in (
            TextChunk(text="Hel"),
            ToolCall(call_id="c1", name="add", arguments={"a": 1}),
            ToolResult(call_id="c1", result=2),
            Progress(done=1, total=3, message="thinking"),
            Custom(name="anything", data={"x": None}),
        )
    ),
    EndMessage(seq=3, turn_id="t1", result={"answer": 42}, tokens_used=7, duration_s=0.5),
    Error(seq=0, code="session_busy", message="busy", details={"turn_id": "t0"}, turn_id="t1"),
    Bye(seq=4, reason="paused"),
    Pong(seq=0, nonce="n1"),
]


def ws_url(facade, session_id: str, after_seq: int | None = None) -> str:
    url = f"{facade.url.replace('http://', 'ws://')}/api/v1/sessions/{session_id}/ws"
    return url if after_seq is None else f"{url}?after_seq={after_seq}"


def printed(events) -> list[str]:
    return [e.text if e.kind == "text_chunk" else f"{e.kind}:{getattr(e, 'done', '')}" for e in events]


@pytest.fixture
def counter(facade):
    """A fresh session of agents.counter for tenant alpha, closed afterwards."""
    with RuntimeClient(facade.url, facade.keys["alpha"]) as client, client.create_session("agents.counter") as session:
        yield session


def test_every_message_round_trips_and_validates_against_the_published_schema(facade):
    with facade.client("alpha-read") as http:
        published = http.get("/api/v1/protocol/agent").json()
    assert published == json.loads(json.dumps(protocol_schema()))
    assert published == json.loads((ROOT / "docs" / "agent-protocol.schema.json").read_text())
    for adapter, messages, part in (
        (client_message_adapter, CLIENT_MESSAGES, "client_to_server"),
        (server_message_adapter, SERVER_MESSAGES, "server_to_client"),
    ):
        kinds = {m.type for m in messages}
        assert kinds == set(published[part]["discriminator"]["mapping"])
        for message in messages:
            text = frame(message)
            assert adapter.validate_json(text) == message
            jsonschema.validate(json.loads(text), published[part])
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"type": "user_message", "text": 5}, published["client_to_server"])


def test_a_turn_over_the_socket_matches_the_same_turn_over_http(facade):
    with RuntimeClient(facade.url, facade.keys["alpha"]) as client:
        over_http = client.create_session("agents.counter", config={"start": 3})
        over_socket = client.create_session("agents.counter", config={"start": 3})
        streamed = list(over_http.invoke_stream({"text": "x", "data": {"sleep": 0.2}}))
        with over_socket.socket() as socket:
            assert socket.status.state == "active" and socket.status.template == "agents.counter"
            reply = socket.send_message("x", {"sleep": 0.2})
            events = list(reply)
        assert printed(events) == printed([m.event for m in streamed if isinstance(m, Event)])
        assert reply.result == streamed[-1].result and reply.tokens == streamed[-1].tokens_used == 2
        assert reply.text == "counter 4" and reply.duration_s > 0.1 and reply.status == "succeeded"
        for session in (over_http, over_socket):
            session.close()


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_a_connection_cut_mid_turn_is_resumed_with_every_chunk_once(facade, counter, kind):
    port = int(facade.url.rsplit(":", 1)[1])
    proxy = CuttingProxy(port, cut_after=6)  # the upgrade, the status, a few events: then the TCP connection drops
    try:
        if kind == "sync":
            with (
                RuntimeClient(proxy.url, facade.keys["alpha"], config=FAST) as client,
                AgentSocket(client, counter.id) as socket,
            ):
                reply = socket.send_message("long", {"sleep": 1.5}).wait()
                resumed_at = socket.last_seq
        else:
            async with (
                AsyncRuntimeClient(proxy.url, facade.keys["alpha"], config=FAST) as client,
                AsyncAgentSocket(client, counter.id) as socket,
            ):
                reply = await (await socket.send_message("long", {"sleep": 1.5})).wait()
                resumed_at = socket.last_seq
        assert proxy.cut.is_set() and proxy.connections >= 2  # the cut socket, then the resumed one
        assert printed(reply.events) == [f"progress:{float(n)}" for n in range(1, 31)] + ["counter 1"]
        assert reply.result["count"] == 1 and resumed_at > 30
    finally:
        proxy.close()


def test_bad_frames_get_an_error_frame_and_the_socket_stays_open(facade):
    with RuntimeClient(facade.url, facade.keys["alpha"]) as client:
        session = client.create_session("agents.counter")
    with ws_client.connect(ws_url(facade, session.id), additional_headers=facade.headers("alpha")) as ws:
        assert json.loads(ws.recv(timeout=30))["type"] == "status"
        for bad, code, mentions in (
            ("not json", "bad_message", "json"),
            (json.dumps({"type": "shout"}), "bad_message", "shout"),
            (json.dumps({"type": "user_message", "text": 5}), "bad_message", "text"),
            (json.dumps({"type": "user_message", "extra": 1}), "bad_message", "extra"),
            (b"\x00binary", "bad_message", "text frames"),
            (json.dumps({"type": "user_message", "text": "x" * (1 << 20)}), "frame_too_large", "1048576"),
        ):
            ws.send(bad)
            error = json.loads(ws.recv(timeout=30))
            assert error["type"] == "error" and error["code"] == code and error["usable"], (bad[:40], error)
            assert mentions in error["message"].lower() and error["seq"] == 0
        ws.send(json.dumps({"type": "ping", "nonce": "still-open"}))
        assert json.loads(ws.recv(timeout=30)) == {"type": "pong", "seq": 0, "nonce": "still-open"}
        ws.send(json.dumps({"type": "user_message", "turn_id": "after-bad", "data": {"fail": True}}))
        while (message := json.loads(ws.recv(timeout=30)))["type"] != "error":
            assert message["type"] in ("status", "event")
        assert message["code"] == "invocation_failed" and message["turn_id"] == "after-bad" and message["usable"]
        assert message["details"]["agent_code"] == "refused_by_agent" and "Traceback" not in json.dumps(message)
        ws.send(json.dumps({"type": "user_message", "turn_id": "good"}))
        while (message := json.loads(ws.recv(timeout=30)))["type"] != "end":
            pass
        assert message["turn_id"] == "good" and message["result"]["count"] == 1
    with RuntimeClient(facade.url, facade.keys["alpha"]) as client:
        client.close_session(session.id)


def test_agent_errors_raise_from_the_iterator_and_the_socket_stays_usable(counter):
    with counter.socket() as socket:
        with pytest.raises(InvocationError) as failed:
            socket.send_message(data={"fail": True}).wait()
        assert failed.value.details["agent_code"] == "refused_by_agent"
        assert socket.send_message("again").wait().result["count"] == 1


def test_two_sockets_share_a_session_and_its_turns(facade, tmp_path):
    gate = tmp_path / "gate"
    with RuntimeClient(facade.url, facade.keys["alpha"]) as client, client.create_session("agents.counter") as session:
        seen_by_b: list = []
        b_saw_start, b_saw_end = threading.Event(), threading.Event()

        def watch(message) -> None:
            seen_by_b.append(message)
            if isinstance(message, End):
                b_saw_end.set()

        def watch_status(status) -> None:
            if status.turn_id == "a-1":
                b_saw_start.set()

        with session.socket() as a, session.socket(on_message=watch, on_status=watch_status) as b:
            reply = a.send_message("from a", {"gate": str(gate), "sleep": 0.2}, turn_id="a-1")
            assert b_saw_start.wait(60)  # a's turn holds the session (until the gate opens)
            with pytest.raises(SessionBusyError):
                b.send_message("from b while a's turn runs").wait()
            gate.touch()
            events = list(reply)
            assert b_saw_end.wait(30)
            b_events = [m.event for m in seen_by_b if isinstance(m, Event)]
            assert printed(b_events) == printed(events)
            assert b.send_message("from b").wait().result["count"] == 2  # a socket may send once the turn ends


def test_a_fresh_socket_hears_only_what_happens_from_now_and_after_seq_0_replays_history(facade, counter):
    counter.invoke("an earlier turn")
    with ws_client.connect(ws_url(facade, counter.id), additional_headers=facade.headers("alpha")) as ws:
        status = json.loads(ws.recv(timeout=30))
        assert status["type"] == "status" and status["seq"] > 0
        ws.send(json.dumps({"type": "ping", "nonce": "first"}))
        assert json.loads(ws.recv(timeout=30))["type"] == "pong"  # no replay of the earlier turn came before it
        ws.send(json.dumps({"type": "user_message", "turn_id": "now"}))
        while (message := json.loads(ws.recv(timeout=30)))["type"] != "end":
            assert message.get("turn_id") in (None, "now")
        assert message["turn_id"] == "now" and message["result"]["count"] == 2 and message["seq"] > status["seq"]
    with ws_client.connect(ws_url(facade, counter.id, after_seq=0), additional_headers=facade.headers("alpha")) as ws:
        assert json.loads(ws.recv(timeout=30))["type"] == "status"
        replayed = [json.loads(ws.recv(timeout=30)) for _ in range(2)]
        assert [(m["type"], m["result"]["count"]) for m in replayed if m["type"] == "end"] == [("end", 1)]
    with counter.socket() as socket:  # the client: a fresh socket's first answer is its own turn's
        assert socket.last_seq == socket.status.seq
        assert socket.send_message("mine").wait().result["count"] == 3


@pytest.mark.parametrize("busy", ["reject", "queue"])
async def test_fifty_concurrent_turns_on_one_session_are_each_accounted_for(facade, tmp_path, busy):
    """40 turns from 4 sockets and 10 HTTP invokes, all at once: under reject exactly one runs and 49 callers hear
    session_busy; under queue all 50 run, one after another."""
    import httpx
    import websockets

    gate = tmp_path / "gate"
    data = {"gate": str(gate)} if busy == "reject" else {"sleep": 0.05}
    template = "agents.counter" if busy == "reject" else "agents.queued"
    async with AsyncRuntimeClient(facade.url, facade.keys["alpha"]) as client:
        session = await client.create_session(template)
        outcomes: dict[str, str] = {}
        order: list[str] = []  # turns as the first socket heard them: (start status, events..., end)
        sockets = [
            await websockets.connect(ws_url(facade, session.id), additional_headers=facade.headers("alpha"))
            for _ in range(4)
        ]
        mine = {n: [f"s{n}-{i}" for i in range(10)] for n in range(4)}

        async def listen(n: int, ws) -> None:
            async for text in ws:
                message = json.loads(text)
                turn_id = message.get("turn_id")
                if n == 0 and turn_id and message["type"] in ("status", "event", "end"):
                    order.append(turn_id)
                if turn_id in mine[n] and message["type"] in ("end", "error"):
                    outcomes[turn_id] = message.get("code", "end")

        async def invoke(i: int) -> None:
            async with httpx.AsyncClient(base_url=facade.url, headers=facade.headers("alpha"), timeout=300) as http:
                reply = await http.post(
                    f"/api/v1/sessions/{session.id}/invoke", json={"turn_id": f"h-{i}", "data": data}
                )
            outcomes[f"h-{i}"] = "end" if reply.status_code == 200 else reply.json()["error"]["code"]

        for ws in sockets:
            assert json.loads(await ws.recv())["type"] == "status"
        listeners = [asyncio.create_task(listen(n, ws)) for n, ws in enumerate(sockets)]
        sends = [
            ws.send(frame(UserMessage(turn_id=turn_id, data=data)))
            for n, ws in enumerate(sockets)
            for turn_id in mine[n]
        ]
        invokes = [asyncio.create_task(invoke(i)) for i in range(10)]
        await asyncio.gather(*sends)
        if busy == "reject":  # the one turn let in holds the session until every other caller has its answer
            await async_wait_until(lambda: _count(outcomes, 49), 120, what="49 refusals")
            gate.touch()
        await async_wait_until(lambda: _count(outcomes, 50), 300, what="an outcome for all 50 turns")
        await asyncio.gather(*invokes)
        for task in listeners:
            task.cancel()
        for ws in sockets:
            await ws.close()
        await session.close()

    tally = {outcome: list(outcomes.values()).count(outcome) for outcome in set(outcomes.values())}
    if busy == "reject":
        assert tally == {"end": 1, "session_busy": 49}
    else:
        assert tally == {"end": 50}
        socket_turns = [t for t in dict.fromkeys(order) if t.startswith("s")]
        assert len(socket_turns) == 40
        runs = [turn for i, turn in enumerate(order) if i == 0 or order[i - 1] != turn]
        assert len(runs) == len(set(runs)), "two turns ran at once"  # each turn's messages in one unbroken run


async def _count(outcomes: dict[str, str], at_least: int) -> bool:
    return len(outcomes) >= at_least


def test_pausing_over_http_says_bye_to_open_sockets(facade):
    with RuntimeClient(facade.url, facade.keys["alpha"]) as client, client.create_session("agents.counter") as session:
        byes: list[Bye] = []
        got_bye = threading.Event()
        with session.socket(on_bye=lambda bye: (byes.append(bye), got_bye.set())) as socket:
            socket.send_message("before").wait()
            session.pause()
            assert got_bye.wait(30) and byes[0].reason == "paused"
            with pytest.raises(SessionPausedError):
                socket.send_message("after").wait()
        with pytest.raises(SessionPausedError) as refused, AgentSocket(client, session.id):
            pass
        assert refused.value.status_code == 409


def test_sockets_are_refused_before_the_upgrade_for_another_tenant_or_no_key(facade):
    with RuntimeClient(facade.url, facade.keys["alpha"]) as client, client.create_session("agents.counter") as session:
        for headers, subprotocols, status in (
            (facade.headers("beta"), None, 404),
            ({}, None, 401),
            ({}, [f"rr.key.{facade.keys['beta']}"], 404),
        ):
            with pytest.raises(InvalidStatus) as refused:
                ws_client.connect(
                    ws_url(facade, session.id), additional_headers=headers, subprotocols=subprotocols, open_timeout=30
                )
            assert refused.value.response.status_code == status
        missing = ws_url(facade, "ses_00000000000000000000000000")
        with pytest.raises(InvalidStatus) as nobodys:
            ws_client.connect(missing, additional_headers=facade.headers("beta"), open_timeout=30)
        with pytest.raises(InvalidStatus) as theirs:
            ws_client.connect(ws_url(facade, session.id), additional_headers=facade.headers("beta"), open_timeout=30)
        assert theirs.value.response.body.replace(session.id.encode(), b"ID") == nobodys.value.response.body.replace(
            b"ses_00000000000000000000000000", b"ID"
        )


def test_a_read_key_may_watch_but_not_send(facade, counter):
    read_key = f"rr.key.{facade.keys['alpha-read']}"
    with ws_client.connect(ws_url(facade, counter.id), subprotocols=["rr.agent.v1", read_key]) as ws:
        assert ws.subprotocol == "rr.agent.v1"
        assert json.loads(ws.recv(timeout=30))["type"] == "status"
        ws.send(json.dumps({"type": "user_message", "turn_id": "r1", "text": "hi"}))
        refused = json.loads(ws.recv(timeout=30))
        assert refused["code"] == "permission_denied" and refused["turn_id"] == "r1"
        counter.invoke("the owner's turn")  # the reader watches it
        while (message := json.loads(ws.recv(timeout=30)))["type"] != "end":
            pass
        assert message["result"]["count"] == 1


async def test_fifty_sockets_run_turns_at_once(facade):
    async with AsyncRuntimeClient(facade.url, facade.keys["alpha"]) as client:
        sessions = await asyncio.gather(*(client.create_session("agents.counter") for _ in range(50)))

        async def talk(session) -> list[int]:
            async with session.socket() as socket:
                counts = []
                for turn in range(3):
                    reply = await (await socket.send_message(f"turn {turn}", {"sleep": 0.1})).wait()
                    counts.append(reply.result["count"])
                return counts

        results = await asyncio.wait_for(asyncio.gather(*(talk(s) for s in sessions)), 300)
        assert results == [[1, 2, 3]] * 50
        await asyncio.gather(*(s.close() for s in sessions))


def test_a_client_written_from_the_schema_alone_completes_a_turn(facade, tmp_path):
    schema = tmp_path / "agent-protocol.schema.json"
    schema.write_text(json.dumps(protocol_schema()))
    with RuntimeClient(facade.url, facade.keys["alpha"]) as client, client.create_session("agents.counter") as session:
        script = ROOT / "tests" / "fixtures" / "clients" / "independent_agent_client.py"
        ran = subprocess.run(
            [sys.executable, str(script), ws_url(facade, session.id), facade.keys["alpha"], str(schema)],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=tmp_path,
        )
        assert ran.returncode == 0, ran.stderr
        summary = json.loads(ran.stdout)
        assert summary == {"text": "counter 1", "result": summary["result"], "tokens": 2, "ray_runtime_imported": False}
        assert summary["result"]["count"] == 1 and summary["result"]["text"] == "hi"
