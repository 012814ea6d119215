"""Every agent turn is a trace: a session's turns and an Agent Lightning rollout's events come out of the API, the
clients and the CLI as AGL triplets and as OTLP/JSON that parses back into OTLP's own messages, with the GenAI
semantic conventions; another tenant's session or rollout is missing."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from typer.testing import CliRunner

from ray_runtime.cli import app
from ray_runtime.client import RuntimeClient

from ..agl_upstream import model_server

pytest.importorskip("opentelemetry.exporter.otlp.proto.common", reason="installed with ray-runtime[cluster]")

CLIENT, INTERNAL = 3, 1  # OTLP's SpanKind numbers
ERROR = 2  # OTLP's StatusCode.STATUS_CODE_ERROR


def parsed(otlp: dict[str, Any]) -> Any:
    """OTLP/JSON back into an ExportTraceServiceRequest (ids from hex to protobuf's base64), as a collector would."""
    from google.protobuf.json_format import ParseDict
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    copy = json.loads(json.dumps(otlp))
    for resource_spans in copy["resourceSpans"]:
        for scope_spans in resource_spans["scopeSpans"]:
            for span in scope_spans["spans"]:
                for field in ("traceId", "spanId", "parentSpanId"):
                    if field in span:
                        assert len(span[field]) == (32 if field == "traceId" else 16)
                        span[field] = base64.b64encode(bytes.fromhex(span[field])).decode()
    return ParseDict(copy, ExportTraceServiceRequest())


def spans_of(message: Any) -> list[Any]:
    return [span for rs in message.resource_spans for ss in rs.scope_spans for span in ss.spans]


def attributes(span: Any) -> dict[str, Any]:
    values = {}
    for attribute in span.attributes:
        value = attribute.value
        kind = value.WhichOneof("value")
        if kind == "array_value":
            values[attribute.key] = [getattr(v, v.WhichOneof("value")) for v in value.array_value.values]
        else:
            values[attribute.key] = getattr(value, kind)
    return values


def run_cli(facade, key: str, *args: str) -> tuple[int, str]:
    env = {"RAY_RUNTIME_URL": facade.url, "RAY_RUNTIME_API_KEY": key, "RAY_RUNTIME_CONFIG": "/nonexistent.toml"}
    result = CliRunner().invoke(app, list(args), env=env)
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout + result.stderr


def test_a_sessions_turns_export_as_otlp_spans_and_triplets(facade, tmp_path):
    with RuntimeClient(facade.url, facade.keys["alpha"]) as client:
        session = client.create_session("agents.counter")
        client.invoke_session(session.id, {"text": "add", "data": {"tool": True, "reward": 0.5}})
        client.invoke_session(session.id, {"text": "again"})

        message = parsed(client.session_trace(session.id))
        spans = spans_of(message)
        by_name = {span.name: span for span in spans}
        root = by_name["session agents.counter"]
        turns = [span for span in spans if span.name == "invoke_agent agents.counter"]
        tool, reward = by_name["execute_tool add"], by_name["reward"]
        assert len(spans) == 5 and len(turns) == 2
        assert {span.trace_id for span in spans} == {root.trace_id} and not root.parent_span_id
        assert all(turn.parent_span_id == root.span_id for turn in turns)
        first = min(turns, key=lambda span: span.start_time_unix_nano)
        assert tool.parent_span_id == first.span_id and reward.parent_span_id == first.span_id
        assert first.start_time_unix_nano <= tool.start_time_unix_nano <= tool.end_time_unix_nano
        assert attributes(first)["gen_ai.operation.name"] == "invoke_agent"
        assert attributes(first)["gen_ai.conversation.id"] == session.id
        asked = {"text": "add", "data": {"tool": True, "reward": 0.5}}
        assert json.loads(attributes(first)["gen_ai.input.messages"]) == asked
        assert attributes(tool)["gen_ai.operation.name"] == "execute_tool"
        assert attributes(tool)["gen_ai.tool.name"] == "add"
        assert json.loads(attributes(tool)["gen_ai.tool.call.result"]) == 1
        assert attributes(reward)["agl.reward"] == 0.5
        assert message.resource_spans[0].resource.attributes[0].key == "service.name"
        assert client.session_trace(session.id) == client.session_trace(session.id)  # ids derive from the session

        triplets = client.session_trace(session.id, "triplet")
        assert [(t["prompt"], t["response"], t["reward"]) for t in triplets] == [
            ({"text": "add", "data": {"tool": True, "reward": 0.5}}, "counter 1", 0.5),
            ("again", "counter 2", None),
        ]

    output = tmp_path / "trace.json"
    code, said = run_cli(facade, facade.keys["alpha"], "session", "trace", session.id, "-o", str(output))
    assert code == 0 and str(output) in said
    assert len(spans_of(parsed(json.loads(output.read_text())))) == 5
    code, said = run_cli(facade, facade.keys["beta"], "session", "trace", session.id)
    assert code != 0 and "does not exist" in said  # another tenant's session is missing


def test_a_rollouts_model_calls_and_reward_export_as_genai_spans_and_triplets(facade, tmp_path):
    with model_server() as (endpoint, _), facade.client("alpha") as http:
        agl = f"{facade.url}/agl"
        http.post(f"{agl}/api/models", json=[{"model": "Qwen/Qwen2.5-7B-Instruct", "endpoint": endpoint}])
        http.post(f"{agl}/api/rollouts", json=[{"rollout_id": "traced", "input": {"q": "2+2"}}]).raise_for_status()
        http.patch(f"{agl}/api/rollouts/traced", json={"status": {"state": "running", "last_attempt_id": "0"}})
        chat = {"messages": [{"role": "user", "content": "what is 2+2?"}], "max_tokens": 8}
        proxied = http.post(f"{agl}/proxy/rollout/traced/attempt/0/mode/train/openai/v1/chat/completions", json=chat)
        assert proxied.status_code == 200, proxied.text
        http.post(f"{agl}/api/rollouts/traced/attempt/0/events", json={"event_type": "reward", "data": {"value": 1.0}})

        message = parsed(http.get("/api/v1/rollouts/traced/trace").json())
        spans = spans_of(message)
        root = next(span for span in spans if not span.parent_span_id)
        call = next(span for span in spans if span.kind == CLIENT)
        assert len(spans) == 3 and root.kind == INTERNAL and call.parent_span_id == root.span_id
        assert call.name == "chat Qwen/Qwen2.5-7B-Instruct"
        facts = attributes(call)
        assert facts["gen_ai.operation.name"] == "chat" and facts["gen_ai.request.model"] == "Qwen/Qwen2.5-7B-Instruct"
        assert facts["gen_ai.usage.input_tokens"] == 5 and facts["gen_ai.usage.output_tokens"] == 3
        assert len(facts["agl.prompt_token_ids"]) == 5 and facts["agl.response_log_probs"] == [-0.5, -1.0, -1.5]
        assert attributes(root)["agl.rollout_id"] == "traced"

        [triplet] = http.get("/api/v1/rollouts/traced/trace", params={"format": "triplet"}).json()
        assert triplet["reward"] == 1.0 and len(triplet["response"]["token_ids"]) == 3
        assert triplet["prompt"]["messages"] == chat["messages"]

        http.patch(f"{agl}/api/rollouts/traced", json={"status": {"state": "failed", "error_message": "ran out"}})
        again = spans_of(parsed(http.get("/api/v1/rollouts/traced/trace").json()))
        failed = next(span for span in again if not span.parent_span_id)
        assert failed.status.code == ERROR and failed.status.message == "ran out"
        bad = http.get("/api/v1/rollouts/traced/trace", params={"format": "csv"})
        assert bad.status_code == 422 and "format" in bad.text

    with facade.client("beta") as theirs:
        assert theirs.get("/api/v1/rollouts/traced/trace").status_code == 404
    output = tmp_path / "rollout.json"
    args = ("agl", "export", "traced", "--format", "triplet", "-o", str(output))
    code, said = run_cli(facade, facade.keys["alpha"], *args)
    assert code == 0, said
    assert json.loads(output.read_text())[0]["reward"] == 1.0


def test_a_turns_model_calls_go_through_the_proxy_into_the_sessions_trace(facade, session_coordinator):
    from ray_runtime.keys import KEYS_NAMESPACE

    with model_server() as (endpoint, upstream), facade.client("alpha") as http:
        llm = {"resource_type": "llm", "endpoint": endpoint, "model": "tiny", "api_key": "upstream-secret"}
        http.patch("/api/v1/resources", json={"resources": {"tiny-llm": llm}}).raise_for_status()
        created = http.post("/api/v1/sessions", json={"template": "agents.modelled"}).json()
        session_id = created["id"]
        turn = http.post(f"/api/v1/sessions/{session_id}/invoke", json={"data": {"ask_model": "what is 2+2?"}})
        assert turn.status_code == 200, turn.text
        [call] = upstream.state.calls  # the model server got the agent's call, unchanged
        assert call["messages"] == [{"role": "user", "content": "what is 2+2?"}] and call["model"] == "tiny"
        turn_id = turn.json()["turn_id"]
        grants = [
            record
            for record in session_coordinator.kv.items(KEYS_NAMESPACE).values()
            if session_id in record.get("name", "")
        ]
        assert grants == []  # the turn's key went with the turn

        spans = spans_of(parsed(http.get(f"/api/v1/sessions/{session_id}/trace").json()))
        [turn_span] = [span for span in spans if span.name == "invoke_agent agents.modelled"]
        [model_span] = [span for span in spans if span.kind == CLIENT]
        assert model_span.parent_span_id == turn_span.span_id and model_span.name == "chat tiny"
        facts = attributes(model_span)
        assert facts["gen_ai.request.model"] == "tiny" and facts["gen_ai.usage.output_tokens"] == 3
        assert len(facts["agl.response_token_ids"]) == 3 and attributes(turn_span)["ray_runtime.turn_id"] == turn_id

        url = f"/api/v1/sessions/{session_id}/turns/{turn_id}/openai/v1/chat/completions"
        unknown = http.post(url, json={"model": "huge", "messages": []})
        assert unknown.status_code == 400 and "tiny" in unknown.json()["error"]["message"]
        with facade.client("beta") as theirs:  # another tenant's session is missing here too
            assert theirs.post(url, json={"model": "tiny", "messages": []}).status_code == 404
