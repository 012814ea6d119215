"""Agent sessions through the façade and the Python clients: templates, a session's life over HTTP (JSON, NDJSON and
server-sent events), typed errors, scopes, and tenants that cannot see each other's sessions."""

from __future__ import annotations

import inspect
import json
import threading

import pytest

from ray_runtime.client import (
    AsyncRuntimeClient,
    End,
    Event,
    InvocationError,
    PermissionDeniedError,
    RuntimeClient,
    SessionBusyError,
    SessionClosedError,
    SessionNotFoundError,
    SessionPausedError,
    TemplateNotFoundError,
    ValidationError,
)

from ..conftest import unique
from .test_api_hardening import without_id
from .test_client import both, opened

MISSING_SESSION = "ses_" + "0" * 24


def test_templates_are_listed_and_read_with_their_config_schema(facade):
    with RuntimeClient(facade.url, facade.keys["alpha-read"]) as client:
        ids = [t.id for t in client.list_templates(tags=["fixture", "dedicated"])]
        assert ids == ["agents.mortal", "agents.phoenix"]
        assert [t.id for t in client.list_templates(name="assist")] == ["chat.assistant"]
        counter = client.get_template("agents.counter")
        assert counter.isolation == "shared" and counter.busy == "reject"
        assert counter.config_schema["properties"]["start"]["minimum"] == 0
        with pytest.raises(TemplateNotFoundError) as missing:
            client.get_template("agents.nobody")
        assert missing.value.status_code == 404


@both
async def test_a_session_lives_through_the_client(facade, kind):
    tag = unique("life")
    async with opened(kind, facade.url, facade.keys["alpha"]) as api:
        session = await api.create_session("agents.counter", config={"start": 5}, metadata={"tag": tag})
        assert session.status == "active" and session.record.tenant == "alpha"

        first = await api.invoke_session(session.id, {"text": "hi", "data": {}})
        assert first.result["count"] == 6 and first.result["text"] == "hi" and first.tokens_used == 2

        messages = await stream(api, session.id, {"sleep": 0.2})
        assert isinstance(messages[-1], End) and messages[-1].result["count"] == 7
        kinds = [m.event.kind for m in messages if isinstance(m, Event)]
        assert kinds.count("progress") == 4 and kinds[-1] == "text_chunk"
        seqs = [m.seq for m in messages]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)

        paused = await act(session, "pause")
        assert paused.status == "paused" and paused.record.checkpoint_key
        with pytest.raises(SessionPausedError) as refused:
            await api.invoke_session(session.id, "while paused")
        assert refused.value.status_code == 409
        await act(session, "resume")
        assert (await api.invoke_session(session.id, "back")).result["count"] == 8

        fork = await act(session, "fork")
        assert fork.id != session.id and fork.record.parent_id == session.id
        assert (await api.invoke_session(fork.id, "fork")).result["count"] == 9
        assert (await api.invoke_session(session.id, "parent")).result["count"] == 9

        page = await api.list_sessions(metadata={"tag": tag})
        assert {s.id for s in page.items} == {session.id, fork.id}
        turns = await api.session_transcript(session.id)
        assert [t.request.get("text") for t in turns if t.request.get("text")] == ["hi", "back", "parent"]

        for each in (fork, session):
            closed = await act(each, "close")
            assert closed.status == "closed"
        with pytest.raises(SessionClosedError) as gone:
            await api.invoke_session(session.id, "after close")
        assert gone.value.status_code == 409


def test_session_objects_close_on_exit_and_stream_their_turns(facade):
    with RuntimeClient(facade.url, facade.keys["alpha-submit"]) as client:
        with client.create_session("chat.assistant", config={"persona": "guide"}) as session:
            assert "Ada" in str(session.invoke("My name is Ada").result)
            streamed = list(session.invoke_stream("What is my name?"))
            assert isinstance(streamed[-1], End) and "Ada" in str(streamed[-1].result)
            assert session.transcript()[-1].status == "succeeded"
        assert session.status == "closed" and client.get_session(session.id).status == "closed"


async def test_async_session_objects(facade):
    async with AsyncRuntimeClient(facade.url, facade.keys["alpha"]) as client:
        async with await client.create_session("agents.counter") as session:
            assert (await session.invoke({"text": "one"})).result["count"] == 1
            messages = [m async for m in session.invoke_stream("two")]
            assert messages[-1].result["count"] == 2
            fork = await session.fork(metadata={"who": "fork"})
            assert (await fork.invoke("three")).result["count"] == 3
            await fork.close()
        assert (await client.get_session(session.id)).status == "closed"


def test_bad_config_is_a_422_naming_the_field_and_creates_nothing(facade):
    tag = unique("bad")
    with facade.client("alpha") as http:
        reply = http.post(
            "/api/v1/sessions", json={"template": "agents.counter", "config": {"start": -1}, "metadata": {"tag": tag}}
        )
        assert reply.status_code == 422
        error = reply.json()["error"]
        assert error["code"] == "validation_error" and "start" in error["message"]
        listed = http.get("/api/v1/sessions", params={"metadata": json.dumps({"tag": tag})}).json()
        assert listed["items"] == []
        for body, field in (
            ({"template": "agents.counter", "config": [1]}, "config"),
            ({"template": "agents.counter", "idle_timeout_s": -5}, "idle_timeout_s"),
            ({"template": "no such template!"}, "template"),
        ):
            reply = http.post("/api/v1/sessions", json=body)
            assert reply.status_code in (400, 404, 422) and field in reply.text, body
        with RuntimeClient(facade.url, facade.keys["alpha"]) as client, pytest.raises(ValidationError) as typed:
            client.create_session("agents.counter", config={"label": ["not", "text"]}, metadata={"tag": tag})
        assert typed.value.status_code == 422 and "label" in str(typed.value)
        assert http.get("/api/v1/sessions", params={"metadata": json.dumps({"tag": tag})}).json()["items"] == []
        bad_filter = http.get("/api/v1/sessions", params={"metadata": "[1]"})
        assert bad_filter.status_code == 400 and "metadata" in bad_filter.json()["error"]["message"]


def test_an_agents_error_is_typed_carries_no_traceback_and_leaves_the_session_usable(facade):
    with RuntimeClient(facade.url, facade.keys["alpha"]) as client, facade.client("alpha") as http:
        session = client.create_session("agents.counter")
        with pytest.raises(InvocationError) as failed:
            session.invoke({"fail": True})
        assert failed.value.status_code == 500 and failed.value.details["agent_code"] == "refused_by_agent"
        raw = http.post(f"/api/v1/sessions/{session.id}/invoke", json={"data": {"fail": True}})
        assert raw.status_code == 500 and "Traceback" not in raw.text and "agents.py" not in raw.text
        lines = http.post(
            f"/api/v1/sessions/{session.id}/invoke",
            json={"data": {"fail": True}},
            headers={"accept": "application/x-ndjson"},
        )
        last = json.loads(lines.text.splitlines()[-1])
        assert last["type"] == "error" and last["usable"] and "Traceback" not in lines.text
        with pytest.raises(InvocationError):
            list(session.invoke_stream({"fail": True}))
        assert session.invoke("still here").result["count"] == 1
        assert [t.status for t in session.transcript()] == ["failed"] * 4 + ["succeeded"]
        session.close()


def test_turns_stream_as_server_sent_events(facade):
    with RuntimeClient(facade.url, facade.keys["alpha"]) as client, facade.client("alpha") as http:
        session = client.create_session("agents.counter")
        reply = http.post(
            f"/api/v1/sessions/{session.id}/invoke",
            json={"data": {"sleep": 0.1}},
            headers={"accept": "text/event-stream"},
        )
        assert reply.headers["content-type"].startswith("text/event-stream")
        events = [json.loads(line[len("data: ") :]) for line in reply.text.split("\n\n") if line]
        assert [e["type"] for e in events] == ["event", "event", "event", "end"]
        assert events[-2]["event"] == {"kind": "text_chunk", "text": "counter 1"} and events[-1]["result"]["count"] == 1
        session.close()


def test_a_second_turn_while_one_runs_is_a_409_busy_and_cancel_stops_the_first(facade):
    with RuntimeClient(facade.url, facade.keys["alpha"]) as client:
        session = client.create_session("agents.counter")
        started, messages = threading.Event(), []

        def slow_turn() -> None:
            with RuntimeClient(facade.url, facade.keys["alpha"]) as other:
                for message in other.stream_turn(session.id, {"data": {"sleep": 20}}):
                    messages.append(message)
                    started.set()

        runner = threading.Thread(target=slow_turn)
        runner.start()
        assert started.wait(60), "the slow turn did not start"
        with pytest.raises(SessionBusyError) as busy:
            session.invoke("now")
        assert busy.value.status_code == 409
        assert session.cancel() is True
        runner.join(30)
        assert isinstance(messages[-1], End) and messages[-1].status == "cancelled"
        assert session.transcript()[-1].status == "cancelled"
        session.close()


def test_one_shot_invocations_close_their_session(facade):
    tag = unique("once")
    with RuntimeClient(facade.url, facade.keys["alpha"]) as client:
        answer = client.invoke_agent("agents.counter", {"text": tag, "data": {}}, config={"start": 41})
        assert answer.result["count"] == 42 and answer.result["text"] == tag
        assert client.get_session(answer.session_id).status == "closed"


def test_read_keys_read_sessions_but_cannot_start_or_change_them(facade):
    with RuntimeClient(facade.url, facade.keys["alpha"]) as owner, facade.client("alpha-read") as reader:
        session = owner.create_session("agents.counter")
        assert reader.get(f"/api/v1/sessions/{session.id}").status_code == 200
        assert reader.get(f"/api/v1/sessions/{session.id}/transcript").status_code == 200
        for method, path in (
            ("POST", "/api/v1/sessions"),
            ("POST", f"/api/v1/sessions/{session.id}/invoke"),
            ("POST", f"/api/v1/sessions/{session.id}/pause"),
            ("DELETE", f"/api/v1/sessions/{session.id}"),
        ):
            reply = reader.request(method, path, json={"template": "agents.counter", "text": "x"})
            assert reply.status_code == 403, (method, path)
        assert owner.get_session(session.id).status == "active"
        with RuntimeClient(facade.url, facade.keys["alpha-read"]) as client, pytest.raises(PermissionDeniedError):
            client.create_session("agents.counter")
        session.close()


def test_another_tenants_session_is_indistinguishable_from_a_missing_one(facade):
    with RuntimeClient(facade.url, facade.keys["alpha"]) as alpha, facade.client("beta") as beta:
        session = alpha.create_session("agents.counter")
        for method, path in (
            ("GET", "/api/v1/sessions/{}"),
            ("GET", "/api/v1/sessions/{}/transcript"),
            ("POST", "/api/v1/sessions/{}/invoke"),
            ("POST", "/api/v1/sessions/{}/pause"),
            ("POST", "/api/v1/sessions/{}/resume"),
            ("POST", "/api/v1/sessions/{}/fork"),
            ("POST", "/api/v1/sessions/{}/refresh"),
            ("POST", "/api/v1/sessions/{}/cancel"),
            ("DELETE", "/api/v1/sessions/{}"),
        ):
            body = {"text": "x"} if path.endswith("invoke") else None
            theirs = beta.request(method, path.format(session.id), json=body)
            nobodys = beta.request(method, path.format(MISSING_SESSION), json=body)
            assert theirs.status_code == nobodys.status_code == 404, path
            assert without_id(theirs.json(), session.id) == without_id(nobodys.json(), MISSING_SESSION), path
        assert session.id not in beta.get("/api/v1/sessions").text
        with RuntimeClient(facade.url, facade.keys["beta"]) as client, pytest.raises(SessionNotFoundError):
            client.invoke_session(session.id, "hi")
        assert alpha.invoke_session(session.id, "still mine").result["count"] == 1
        session.close()


async def stream(api, session_id: str, data: dict) -> list:
    found = api.client.stream_turn(session_id, {"data": data})
    if hasattr(found, "__aiter__"):
        return [m async for m in found]
    return list(found)


async def act(session, action: str):
    """A ``Session`` or ``AsyncSession`` method's answer, either way."""
    answer = getattr(session, action)()
    return await answer if inspect.isawaitable(answer) else answer
