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


def ws_url(facade, session_id: str, after_seq: int = 0) -> str:
    return f"{facade.url.replace('http://', 'ws://')}/api/v1/sessions/{session_id}/ws?after_seq={after_seq}"


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


def test_two_sockets_share_a_session_and_its_turns(facade):
    with RuntimeClient(facade.url, facade.keys["alpha"]) as client, client.create_session("agents.counter") as session:
        seen_by_b: list = []
        b_saw_end = threading.Event()

        def watch(message) -> None:
            seen_by_b.append(message)
            if isinstance(message, End):
                b_saw_end.set()

        with session.socket() as a, session.socket(on_message=watch) as b:
            reply = a.send_message("from a", {"sleep": 0.5})
            first = next(reply)
            with pytest.raises(SessionBusyError):
                b.send_message("from b while a's turn runs").wait()
            rest = list(reply)
            assert b_saw_end.wait(30)
            b_events = [m.event for m in seen_by_b if isinstance(m, Event)]
            assert printed(b_events) == printed([first, *rest])
            assert b.send_message("from b").wait().result["count"] == 2  # a socket may send once the turn ends


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
