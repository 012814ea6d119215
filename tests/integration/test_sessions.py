"""Agent sessions through the driver API, on the session's real Ray cluster: templates, the life of a session (create,
turns, streams, pause, resume, fork, close), its registry, and what happens when agents, hosts or the coordinator
fail."""

from __future__ import annotations

import asyncio
import concurrent.futures
import shutil
import threading
import time

import pytest
import ray

from ray_runtime.config import NAMESPACE as HOST_NAMESPACE
from ray_runtime.errors import (
    InvalidArgumentError,
    InvocationError,
    PayloadTooLargeError,
    RestoreRefusedError,
    SessionBusyError,
    SessionClosedError,
    SessionNotFoundError,
    SessionPausedError,
    SnapshotFailedError,
    SnapshotTooLargeError,
    TemplateNotFoundError,
    TimeoutError,
    ValidationError,
)
from ray_runtime.models.agent import End, Event
from ray_runtime.sessions.manager import AsyncSessions, Sessions, TemplateSource

from ..conftest import FIXTURE_PLUGINS, PLUGINS
from ..waiting import wait_until


@pytest.fixture
def agents(coord) -> Sessions:
    """The fixture templates (tests/fixtures/plugins/agents), for this test's own tenant."""
    return Sessions(coord.session_registry, TemplateSource(FIXTURE_PLUGINS))


@pytest.fixture
def chat(coord) -> Sessions:
    """The example chat plugin's templates, for this test's own tenant."""
    return Sessions(coord.session_registry, TemplateSource(PLUGINS))


def statuses(sessions: Sessions, session_id: str) -> list[tuple[str, str]]:
    return [(t.to.value, t.cause) for t in sessions.get(session_id).transitions]


# ------------------------------------------------------------------------------------------------ templates


def test_templates_are_listed_by_tag_and_name_and_read_by_id(chat, agents):
    assert [t.id for t in chat.list_templates(tags=["chat"])] == ["chat.assistant", "chat.private"]
    assert [t.id for t in chat.list_templates(tags=["dedicated"])] == ["chat.private"]
    assert [t.id for t in agents.list_templates(name="mortal")] == ["agents.mortal"]
    private = chat.get_template("chat.private")
    assert (private.isolation, private.checkpoint, private.recover) == ("dedicated", "every_turn", "last_checkpoint")
    assert private.idle_timeout_s == 900 and private.max_lifetime_s == 8 * 3600 and private.version == "0.1.0"
    with pytest.raises(TemplateNotFoundError):
        chat.get_template("hello.greet")  # a plugin action, but not of mode session
    with pytest.raises(TemplateNotFoundError):
        chat.create("chat.nope")


# --------------------------------------------------------------------------------------------------- a life


def test_a_chat_session_streams_pauses_resumes_with_its_memory_forks_and_closes(chat):
    session = chat.create("chat.assistant", config={"persona": "tester"}, metadata={"user": "ada"})
    assert session.status.value == "active" and session.host.startswith("rr-pool:")
    assert chat.invoke(session.id, "My name is Ada").result["answer"].startswith("Nice to meet you, Ada.")

    messages = list(chat.invoke_stream(session.id, "what is 6 * 7?"))
    kinds = [m.event.kind for m in messages if isinstance(m, Event)]
    assert kinds[:2] == ["tool_call", "tool_result"] and set(kinds[2:]) == {"text_chunk"}
    assert "".join(m.event.text for m in messages if isinstance(m, Event) and m.event.kind == "text_chunk") == (
        "6 * 7 = 42. [tester, t=0.7]"
    )
    end = messages[-1]
    assert isinstance(end, End) and end.result["turns"] == 2 and end.tokens_used == 7  # a token per word
    assert [m.seq for m in messages] == sorted(m.seq for m in messages)

    paused = chat.pause(session.id)
    assert paused.status.value == "paused" and paused.host is None and paused.checkpoint_bytes > 0
    with pytest.raises(SessionPausedError):
        chat.invoke(session.id, "are you there?")
    assert chat.resume(session.id).status.value == "active"
    assert chat.invoke(session.id, "what is my name?").result["answer"].startswith("Your name is Ada.")

    fork = chat.fork(session.id)
    assert fork.id != session.id and fork.metadata == {"user": "ada"} and fork.config == {"persona": "tester"}
    assert chat.invoke(fork.id, "My name is Bob").result["answer"].startswith("Nice to meet you, Bob.")
    assert chat.invoke(session.id, "what is my name?").result["answer"].startswith("Your name is Ada.")  # apart

    assert chat.close(session.id).status.value == "closed"
    with pytest.raises(SessionClosedError):
        chat.invoke(session.id, "hello?")
    record = chat.get(session.id)
    assert record.invocations == 4 and record.tokens > 0  # reported before it left its host
    assert [s for s, _ in statuses(chat, session.id)] == [
        "creating",
        "active",
        "paused",
        "creating",
        "active",
        "closed",
    ]
    transcript = chat.transcript(session.id)
    assert [t.text.split(" [")[0] for t in transcript] == [
        "Nice to meet you, Ada.",
        "6 * 7 = 42.",
        "Your name is Ada.",
        "Your name is Ada.",
    ]
    assert transcript[1].events[0]["name"] == "calculator" and transcript[1].tokens_used == 7
    chat.close(fork.id)


def test_the_agent_reads_its_temperature_from_the_tenants_resources(chat, coord):
    import ray_runtime as rr

    session = chat.create("chat.assistant")
    assert chat.invoke(session.id, "hi").result["answer"].endswith("t=0.7]")  # its config's, no resources yet
    coord.resources.add({"llm": rr.LLM(endpoint="http://x", model="m", sampling_parameters={"temperature": 0.2})})
    wait_until(lambda: chat.invoke(session.id, "hi").result["answer"].endswith("t=0.2]"), 30, what="new resources")
    chat.close(session.id)


def test_listing_filters_by_status_template_and_metadata_with_a_cursor(agents):
    made = [agents.create("agents.counter", metadata={"batch": "list", "n": n}) for n in range(5)]
    agents.pause(made[0].id)
    page = agents.list(metadata={"batch": "list"}, limit=3)
    assert [s.id for s in page.items] == [m.id for m in reversed(made)][:3] and page.next_cursor
    rest = agents.list(metadata={"batch": "list"}, limit=3, cursor=page.next_cursor)
    assert [s.id for s in rest.items] == [made[1].id, made[0].id]
    assert [s.id for s in agents.list(status="paused").items] == [made[0].id]
    assert len(agents.list(template="agents.counter", metadata={"n": 3}).items) == 1
    for m in made:
        agents.close(m.id)


# ------------------------------------------------------------------------------------------------ bad input


def test_bad_input_gets_a_typed_error_and_changes_nothing(agents):
    with pytest.raises(ValidationError) as bad:
        agents.create("agents.counter", config={"start": -1}, metadata={"batch": "bad"})
    assert bad.value.details["errors"][0]["field"] == "start"
    assert agents.list(metadata={"batch": "bad"}).items == []  # the failed create left no session
    with pytest.raises(SessionNotFoundError):
        agents.invoke("ses_00000000000000000000000000", "x")
    session = agents.create("agents.counter")
    with pytest.raises(PayloadTooLargeError):
        agents.invoke(session.id, {"data": "x" * (2 << 20)})
    deep: object = 1
    for _ in range(100):
        deep = [deep]
    with pytest.raises(InvalidArgumentError, match="deeper"):
        agents.invoke(session.id, {"data": deep})
    assert agents.get(session.id).invocations == 0
    agents.close(session.id)


def test_an_agent_that_raises_fails_the_turn_with_its_code_and_the_session_stays_usable(agents):
    session = agents.create("agents.counter")
    with pytest.raises(InvocationError) as failed:
        agents.invoke(session.id, {"data": {"fail": True}})
    assert failed.value.details["agent_code"] == "refused_by_agent"
    assert "Traceback" not in failed.value.message
    with pytest.raises(InvocationError):
        list(agents.invoke_stream(session.id, {"data": {"fail": True}}))
    assert agents.invoke(session.id, "still here").result["count"] == 1
    agents.close(session.id)


def test_a_snapshot_that_fails_or_is_too_large_refuses_the_pause_and_the_session_stays_active(agents):
    fragile = agents.create("agents.fragile")
    with pytest.raises(SnapshotFailedError):
        agents.pause(fragile.id)
    assert agents.get(fragile.id).status.value == "active"
    assert agents.invoke(fragile.id, "x").result["count"] == 1
    agents.close(fragile.id)
    small = agents.create("agents.small")
    agents.invoke(small.id, {"data": {"grow": 200_000}})  # over the template's max_snapshot_bytes (100 kB)
    with pytest.raises(SnapshotTooLargeError):
        agents.pause(small.id)
    assert agents.get(small.id).status.value == "active"
    agents.close(small.id)


def test_a_second_turn_is_refused_or_queued_as_the_template_says(agents, tmp_path):
    rejecting, queueing = agents.create("agents.counter"), agents.create("agents.queued")
    for session, busy in ((rejecting, True), (queueing, False)):
        gate = tmp_path / f"gate-{busy}"  # the first turn holds the session until the gate opens
        slow = concurrent.futures.ThreadPoolExecutor(1).submit(agents.invoke, session.id, {"data": {"gate": str(gate)}})
        wait_until(lambda s=session: _running(agents, s), 60, what="the first turn to run")
        if busy:
            with pytest.raises(SessionBusyError):
                agents.invoke(session.id, "now")
            gate.touch()
            assert slow.result(timeout=60).result["count"] == 1
        else:
            after = concurrent.futures.ThreadPoolExecutor(1).submit(agents.invoke, session.id, "after")
            gate.touch()
            assert after.result(timeout=60).result["count"] == 2  # waited for the first turn
            assert slow.result(timeout=60).result["count"] == 1
        agents.close(session.id)


def test_calls_into_a_session_host_have_a_deadline_in_both_twins(agents, coord, tmp_path, monkeypatch):
    session = agents.create("agents.queued")
    gate = tmp_path / "gate"
    monkeypatch.setenv("RAY_RUNTIME_TURN_TIMEOUT_S", "1.5")
    blocking = Sessions(coord.session_registry, TemplateSource(FIXTURE_PLUGINS))
    awaitable = AsyncSessions(coord.aio.session_registry, TemplateSource(FIXTURE_PLUGINS))
    with pytest.raises(TimeoutError, match="did not answer in time"):
        blocking.invoke(session.id, {"data": {"gate": str(gate)}})
    with pytest.raises(TimeoutError, match="did not answer in time"):
        asyncio.run(awaitable.invoke(session.id, {"data": {"gate": str(gate)}}))
    gate.touch()  # both turns were let in (busy: queue) and run to their end once the gate opens
    wait_until(lambda: agents.get(session.id).invocations == 2, 60, what="both turns to end")
    agents.close(session.id)


def _running(agents: Sessions, session) -> bool:
    host = ray.get_actor(agents.get(session.id).host, namespace=HOST_NAMESPACE)
    return session.id in ray.get(host.ping.remote())["busy"]


def test_a_cancelled_streaming_turn_stops_at_its_next_chunk(agents):
    session = agents.create("agents.counter")
    started = time.monotonic()
    seen = []
    for message in agents.invoke_stream(session.id, {"data": {"sleep": 20}}):
        seen.append(message)
        if len(seen) == 3:
            assert agents.cancel(session.id) is True
    assert time.monotonic() - started < 10
    assert isinstance(seen[-1], End) and seen[-1].status == "cancelled"
    agents.close(session.id)


def test_resuming_under_a_changed_plugin_version_asks_restore_and_a_refusal_keeps_it_paused(agents, coord, tmp_path):
    session = agents.create("agents.picky")
    agents.invoke(session.id, "one")
    agents.pause(session.id)
    newer = tmp_path / "agents"
    shutil.copytree(FIXTURE_PLUGINS / "agents", newer)
    (newer / "agents.py").write_text((newer / "agents.py").read_text().replace("VERSION = 1", "VERSION = 2"))
    (newer / "plugin.yaml").write_text((newer / "plugin.yaml").read_text().replace("0.0.1", "0.0.2"))
    upgraded = Sessions(coord.session_registry, TemplateSource(tmp_path))
    with pytest.raises(RestoreRefusedError, match="version 1, this is 2"):
        upgraded.resume(session.id)
    assert agents.get(session.id).status.value == "paused"
    assert agents.resume(session.id).status.value == "active"  # the old version still reads it
    assert agents.invoke(session.id, "two").result["count"] == 2
    agents.close(session.id)


# ---------------------------------------------------------------------------------------------- lifecycle


def test_an_idle_session_unloads_and_its_next_turn_brings_it_back(agents):
    session = agents.create("agents.idle")  # idle_timeout_s: 1, on_idle: unload
    agents.invoke(session.id, "one")
    wait_until(lambda: agents.get(session.id).status.value == "inactive", 30, what="the idle unload")
    assert agents.invoke(session.id, "two").result["count"] == 2  # resumed transparently, memory intact
    causes = [c for s, c in statuses(agents, session.id) if s in ("inactive", "active")]
    assert causes == ["created", "idle_timeout", "resumed"]
    agents.close(session.id)


def test_an_idle_session_of_a_closing_template_closes(agents):
    session = agents.create("agents.brief")  # idle_timeout_s: 1, on_idle: close
    wait_until(lambda: agents.get(session.id).status.value == "closed", 30, what="the idle close")
    assert statuses(agents, session.id)[-1] == ("closed", "idle_timeout")


def test_refresh_resets_the_idle_timer(agents):
    session = agents.create("agents.idle")
    for _ in range(4):
        time.sleep(0.5)
        agents.refresh(session.id)
    assert agents.get(session.id).status.value == "active"  # 2 s without a turn, but refreshed
    agents.close(session.id)


def test_a_dedicated_sessions_dead_host_means_error_or_recovery_from_its_checkpoint(agents):
    mortal, phoenix = agents.create("agents.mortal"), agents.create("agents.phoenix")
    assert mortal.host.startswith(f"rr-session:{mortal.id}:") and phoenix.host.startswith(f"rr-session:{phoenix.id}")
    pids = {s.id: agents.invoke(s.id, {"data": {"pid": True}}).result["pid"] for s in (mortal, phoenix)}
    agents.invoke(phoenix.id, "two")  # checkpoint: every_turn, so the checkpoint holds count 2
    assert pids[mortal.id] != pids[phoenix.id]  # each on a process of its own
    for session in (mortal, phoenix):
        ray.kill(ray.get_actor(session.host, namespace=HOST_NAMESPACE))
    wait_until(lambda: agents.get(mortal.id).status.value == "error", 30, what="the mortal session's error")
    assert "killed by `ray.kill`" in agents.get(mortal.id).error
    with pytest.raises(SessionClosedError):
        agents.invoke(mortal.id, "anyone?")
    wait_until(lambda: agents.get(phoenix.id).status.value == "inactive", 30, what="the phoenix's recovery")
    back = agents.invoke(phoenix.id, {"data": {"pid": True}}).result
    assert back["count"] == 3 and back["pid"] != pids[phoenix.id]  # its state, in a new process
    agents.close(phoenix.id)


def test_a_dedicated_host_gives_its_process_back_when_its_session_pauses(agents):
    session = agents.create("agents.mortal")
    host = session.host
    agents.pause(session.id)
    wait_until(lambda: _gone(host), 30, what="the dedicated host to end")
    assert agents.resume(session.id).status.value == "active"
    agents.close(session.id)


def _gone(name: str) -> bool:
    try:
        ray.get_actor(name, namespace=HOST_NAMESPACE)
    except ValueError:
        return True
    return False


def test_the_coordinators_death_loses_no_session_and_live_ones_keep_running(agents, coord):
    sessions = [agents.create("agents.counter") for _ in range(3)]
    for s in sessions:
        agents.invoke(s.id, "before")
    agents.pause(sessions[2].id)
    time.sleep(1.2)  # counters reach the coordinator in batches of at most half a second
    pid = coord.info()["pid"]
    ray.kill(coord.actor, no_restart=False)
    wait_until(lambda: coord.info()["pid"] != pid, 60, interval_s=0.1, what="the coordinator to restart")
    assert agents.invoke(sessions[0].id, "after").result["count"] == 2  # its agent kept its memory
    assert [agents.get(s.id).status.value for s in sessions] == ["active", "active", "paused"]
    assert agents.get(sessions[1].id).invocations == 1
    assert agents.resume(sessions[2].id).status.value == "active"
    for s in sessions:
        agents.close(s.id)


def test_two_hundred_shared_sessions_take_turns_at_once(agents):
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        sessions = list(pool.map(lambda _: agents.create("agents.counter"), range(200)))
        results = list(pool.map(lambda s: agents.invoke(s.id, "go").result["count"], sessions))
    assert results == [1] * 200
    hosts = {s.host for s in sessions}
    assert len(hosts) == 2  # sessions_per_host: 100, so the pool grew to two hosts
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda s: agents.close(s.id), sessions))


def test_a_pool_never_mixes_tenants(agents, coord):
    other = Sessions(coord.for_tenant(coord.tenant + "-other").session_registry, TemplateSource(FIXTURE_PLUGINS))
    mine, theirs = agents.create("agents.counter"), other.create("agents.counter")
    assert mine.host != theirs.host and coord.tenant in mine.host
    with pytest.raises(SessionNotFoundError):
        other.invoke(mine.id, "not yours")
    with pytest.raises(SessionNotFoundError):
        other.get(mine.id)
    agents.close(mine.id)
    other.close(theirs.id)


def test_a_second_resume_waits_for_the_first(agents):
    session = agents.create("agents.counter")
    agents.invoke(session.id, "x")
    agents.pause(session.id)
    results: list = []
    threads = [threading.Thread(target=lambda: results.append(agents.resume(session.id).host)) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 2 and results[0] == results[1]
    assert agents.invoke(session.id, "y").result["count"] == 2
    agents.close(session.id)


def test_sessions_imported_in_bulk_are_paused_and_start_fresh_from_their_config_on_resume(agents):
    tag = f"import-{time.time_ns()}"
    items = [{"config": {"start": n * 10}, "metadata": {"tag": tag, "n": n}} for n in range(7)]
    ids = agents.import_paused("agents.counter", items, batch=3)  # three durable changes
    assert len(ids) == len(set(ids)) == 7
    listed = agents.list(metadata={"tag": tag}, limit=100).items
    assert {s.id for s in listed} == set(ids) and {s.status.value for s in listed} == {"paused"}
    assert agents.get(ids[4]).transitions[-1].cause == "imported"
    agents.resume(ids[4])
    assert agents.invoke(ids[4], "hi").result["count"] == 41
    agents.close(ids[4])
    with pytest.raises(TemplateNotFoundError):
        agents.import_paused("agents.nobody", items)


def calls_of(registry) -> list[str]:
    """The coordinator calls a session registry handle makes from now on, by method."""
    made: list[str] = []
    run = registry._run

    def counted(call):
        made.append(call.method)
        return run(call)

    registry._run = counted
    return made


def test_operations_read_the_registry_once_at_most(agents, coord):
    made = calls_of(agents.registry)
    session = agents.create("agents.counter")
    assert made == ["session_create"]  # the host's own opened call answers with the record: no read after it
    made.clear()
    agents.invoke(session.id, "a warm turn")
    assert made in ([], ["session_get"])  # its route is remembered (for 2 s): a turn reads it once at most
    agents.pause(session.id)
    made.clear()
    agents.resume(session.id)
    assert made == ["session_get", "session_resume"]  # the template to bring back, then the resume itself

    follower = AsyncSessions(coord.aio.session_registry, TemplateSource(FIXTURE_PLUGINS))
    followed = calls_of(follower.registry)

    async def connect() -> dict:
        await follower.route(session.id)  # what the agent socket checks before its upgrade
        async for message in follower.follow(session.id):
            return message  # the status that opens the stream
        raise AssertionError("no status")

    assert asyncio.run(connect())["type"] == "status"
    assert followed == ["session_get"]  # connecting read the session once; the subscription used its route
    agents.close(session.id)
