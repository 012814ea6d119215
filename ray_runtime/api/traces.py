"""A rollout's events and a session's turns as traces people train on and trace viewers load: Agent Lightning
triplets (prompt, response, reward) and OpenTelemetry spans with the GenAI semantic conventions, as OTLP JSON.

The spans are made with the OpenTelemetry SDK and encoded with its OTLP encoder; the protobuf message is then mapped
to JSON as the OTLP specification says (camelCase names, enums as numbers, trace and span ids in hex). Ids are
derived from what is traced, so exporting the same rollout twice gives the same trace.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from ray_runtime.api.agl_trajectory import MODEL_REQUEST, REWARD, token_view, triplets
from ray_runtime.models.sessions import SessionInfo, TurnRecord

__all__ = ["Step", "otlp_json", "rollout_steps", "rollout_triplets", "session_steps", "session_triplets"]

_SCOPE = "ray_runtime"
_NS = 1_000_000_000


@dataclass
class Step:
    """One span to be: its name, kind (``client`` for a model call), times (s), attributes, error, children."""

    name: str
    start: float
    end: float
    attributes: dict[str, Any]
    client: bool = False
    error: str | None = None
    children: list[Step] | None = None


# ------------------------------------------------------------------------------------------------ rollouts


def _reward(data: dict[str, Any]) -> float | None:
    value = data.get("value", data.get("reward"))
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _model_call(data: dict[str, Any], at: float) -> Step:
    request = data.get("request") if isinstance(data.get("request"), dict) else {}
    response = data.get("response") if isinstance(data.get("response"), dict) else {}
    chat = "messages" in request
    model = request.get("model") or data.get("model") or ""
    usage = data.get("usage") or {}
    latency = float(data.get("latency_ms") or 0) / 1000
    attributes: dict[str, Any] = {
        "gen_ai.operation.name": "chat" if chat else "text_completion",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": model,
        "gen_ai.response.model": response.get("model") or model,
        "gen_ai.response.id": response.get("id"),
        "gen_ai.usage.input_tokens": usage.get("prompt_tokens"),
        "gen_ai.usage.output_tokens": usage.get("completion_tokens"),
        "gen_ai.response.finish_reasons": [data["finish_reason"]] if data.get("finish_reason") else None,
        "gen_ai.request.temperature": request.get("temperature"),
        "gen_ai.request.max_tokens": request.get("max_tokens"),
        "gen_ai.input.messages": json.dumps(request.get("messages", request.get("prompt"))),
        "gen_ai.output.messages": json.dumps([c.get("message", c.get("text")) for c in response.get("choices", [])]),
        "server.address": (data.get("server") or {}).get("endpoint"),
    }
    view = token_view(data)
    attributes["agl.prompt_token_ids"] = view["prompt_token_ids"] or None
    attributes["agl.response_token_ids"] = view["response_token_ids"] or None
    attributes["agl.response_log_probs"] = view["response_log_probs"]
    error = None if data.get("status", "ok") == "ok" else f"HTTP {data.get('http_status')}"
    return Step(f"{attributes['gen_ai.operation.name']} {model}".strip(), at - latency, at, attributes, True, error)


def rollout_steps(rollout: dict[str, Any], attempt_id: str, events: list[tuple[str, float, dict[str, Any]]]) -> Step:
    """A rollout's attempt as one ``invoke_agent`` span with a span per event (model calls as GenAI ``chat`` /
    ``text_completion`` client spans, rewards and other events as spans of their own)."""
    children = []
    for event_type, at, data in events:
        if event_type == MODEL_REQUEST:
            children.append(_model_call(data, at))
        else:
            attributes = {"agl.event_type": event_type, "agl.data": json.dumps(data)}
            if event_type == REWARD:
                attributes["agl.reward"] = _reward(data)
            children.append(Step(event_type, at, at, attributes))
    status = rollout.get("status") or {}
    start = min([status.get("created_at") or math.inf] + [c.start for c in children])
    end = max([status.get("updated_at") or 0, start] + [c.end for c in children])
    attributes = {
        "gen_ai.operation.name": "invoke_agent",
        "gen_ai.conversation.id": rollout["rollout_id"],
        "agl.rollout_id": rollout["rollout_id"],
        "agl.attempt_id": attempt_id,
        "agl.state": status.get("state"),
        "agl.is_train": rollout.get("is_train"),
    }
    error = (status.get("error_message") or "failed") if status.get("state") == "failed" else None
    return Step(f"invoke_agent rollout {rollout['rollout_id']}", start, end, attributes, error=error, children=children)


def rollout_triplets(events: list[tuple[str, float, dict[str, Any]]]) -> list[dict[str, Any]]:
    """AGL triplets of an attempt: each kept model call (one per distinct prompt, as AGL trims them) with its token
    view, and the reward posted after it (None when none came)."""
    pairs = [(event_type, data) for event_type, _, data in events]
    kept = [(i, data) for i, data in triplets(pairs) if events[i][0] == MODEL_REQUEST]
    out = []
    for position, (index, _) in enumerate(kept):
        following = kept[position + 1][0] if position + 1 < len(kept) else len(events)
        rewards = [_reward(d) for t, _, d in events[index + 1 : following] if t == REWARD]
        data = events[index][2]
        view = token_view(data)
        request = data.get("request") or {}
        out.append(
            {
                "prompt": {"token_ids": view["prompt_token_ids"], "messages": request.get("messages")},
                "response": {"token_ids": view["response_token_ids"], "log_probs": view["response_log_probs"]},
                "reward": next((r for r in reversed(rewards) if r is not None), None),
                "metadata": {"server": view["server"], "at": events[index][1]},
            }
        )
    return out


# ------------------------------------------------------------------------------------------------ sessions


def _event_reward(event: dict[str, Any]) -> float | None:
    """The value of an agent's ``Custom(name="reward", data=...)`` event (data: a number or ``{"value": n}``)."""
    if event.get("kind") != "custom" or event.get("name") != REWARD:
        return None
    data = event.get("data")
    return _reward(data if isinstance(data, dict) else {"value": data})


def _turn_reward(turn: TurnRecord) -> float | None:
    values = [_event_reward(e) for e in turn.events]
    return next((v for v in reversed(values) if v is not None), None)


def _asked(turn: TurnRecord) -> Any:
    """What a turn was asked: its text alone, or its text and data."""
    asked = {k: v for k, v in turn.request.items() if k in ("text", "data") and v is not None}
    return asked["text"] if list(asked) == ["text"] else asked


def _turn_children(turn: TurnRecord, end: float) -> Iterator[Step]:
    """Tool calls (each up to its result) and the agent's custom events, spread over the turn in order (the
    transcript keeps their order, not their times)."""
    events = turn.events
    results = {e.get("call_id"): i for i, e in enumerate(events) if e.get("kind") == "tool_result"}
    width = (end - turn.at) / (len(events) + 1) if events else 0.0
    for i, event in enumerate(events):
        at = turn.at + width * (i + 1)
        if event.get("kind") == "tool_call":
            done = results.get(event.get("call_id"))
            result = events[done] if done is not None else {}
            attributes = {
                "gen_ai.operation.name": "execute_tool",
                "gen_ai.tool.name": event.get("name"),
                "gen_ai.tool.call.id": event.get("call_id"),
                "gen_ai.tool.call.arguments": json.dumps(event.get("arguments")),
                "gen_ai.tool.call.result": json.dumps(result.get("result")),
            }
            stop = turn.at + width * (done + 1) if done is not None else at
            yield Step(f"execute_tool {event.get('name')}", at, stop, attributes, error=result.get("error"))
        elif event.get("kind") == "custom":
            data = {"ray_runtime.event": event.get("name"), "ray_runtime.data": json.dumps(event.get("data"))}
            if event.get("name") == REWARD:
                data["agl.reward"] = _event_reward(event)
            yield Step(str(event.get("name")), at, at, data)


def session_steps(
    session: SessionInfo,
    turns: list[TurnRecord],
    model_calls: dict[str, list[tuple[float, dict[str, Any]]]] | None = None,
) -> Step:
    """A session as one span with an ``invoke_agent`` span per turn, and inside each its tool calls, events and
    the model calls it made through the proxy (``model_calls``: turn id -> (time, data) of each)."""
    children = []
    for turn in turns:
        end = turn.at + turn.duration_s
        attributes = {
            "gen_ai.operation.name": "invoke_agent",
            "gen_ai.agent.name": session.template,
            "gen_ai.conversation.id": session.id,
            "ray_runtime.turn_id": turn.turn_id,
            "ray_runtime.turn.status": turn.status,
            "ray_runtime.tokens_used": turn.tokens_used,
            "gen_ai.input.messages": json.dumps(_asked(turn)),
            "gen_ai.output.messages": json.dumps(turn.text or turn.result),
        }
        error = (turn.error or {}).get("message") if turn.error else None
        step = Step(f"invoke_agent {session.template}", turn.at, end, attributes, error=error)
        calls = [_model_call(data, at) for at, data in (model_calls or {}).get(turn.turn_id, [])]
        step.children = sorted([*_turn_children(turn, end), *calls], key=lambda child: child.start)
        children.append(step)
    start = min([session.created_at] + [c.start for c in children])
    end = max([session.last_activity_at, start] + [c.end for c in children])
    attributes = {
        "gen_ai.conversation.id": session.id,
        "gen_ai.agent.name": session.template,
        "ray_runtime.session.status": session.status.value,
    }
    return Step(f"session {session.template}", start, end, attributes, children=children)


def session_triplets(turns: list[TurnRecord]) -> list[dict[str, Any]]:
    """A session's turns as AGL triplets: the turn's input, what the agent answered, the reward it reported."""
    return [
        {
            "prompt": _asked(turn),
            "response": turn.text or turn.result,
            "reward": _turn_reward(turn),
            "metadata": {"turn_id": turn.turn_id, "status": turn.status, "at": turn.at, "tokens": turn.tokens_used},
        }
        for turn in turns
    ]


# ------------------------------------------------------------------------------------------------ OTLP


class _DerivedIds:
    """Trace and span ids derived from a seed (the traced object), in the order spans are made."""

    def __init__(self, seed: str) -> None:
        self.seed = seed
        self.count = 0

    def generate_trace_id(self) -> int:
        return int.from_bytes(hashlib.sha256(f"trace:{self.seed}".encode()).digest()[:16], "big") or 1

    def is_trace_id_random(self) -> bool:
        return False

    def generate_span_id(self) -> int:
        self.count += 1
        return int.from_bytes(hashlib.sha256(f"span:{self.seed}:{self.count}".encode()).digest()[:8], "big") or 1


def _attributes(values: dict[str, Any]) -> dict[str, Any]:
    """Attributes OpenTelemetry accepts: None dropped, lists of one primitive type kept."""
    kept: dict[str, Any] = {}
    for key, value in values.items():
        if value is None:
            continue
        if isinstance(value, list):
            if value and len({type(v) for v in value}) == 1 and isinstance(value[0], str | bool | int | float):
                kept[key] = value
            elif value:
                kept[key] = json.dumps(value)
        elif isinstance(value, str | bool | int | float):
            kept[key] = value
        else:
            kept[key] = json.dumps(value)
    return kept


def otlp_json(root: Step, *, seed: str, service: str = "ray_runtime") -> dict[str, Any]:
    """``root`` and its children as an OTLP/JSON ``ExportTraceServiceRequest`` (one resource, one scope)."""
    from google.protobuf.json_format import MessageToDict
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import SpanKind, Status, StatusCode

    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource({"service.name": service}), id_generator=_DerivedIds(seed))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer(_SCOPE)

    def emit(step: Step, parent: Any) -> None:
        kind = SpanKind.CLIENT if step.client else SpanKind.INTERNAL
        context = trace.set_span_in_context(parent) if parent is not None else None
        start = int(step.start * _NS)
        span = tracer.start_span(
            step.name, context=context, kind=kind, attributes=_attributes(step.attributes), start_time=start
        )
        if step.error:
            span.set_status(Status(StatusCode.ERROR, step.error))
        for child in step.children or ():
            emit(child, span)
        span.end(end_time=max(start, int(step.end * _NS)))

    emit(root, None)
    provider.shutdown()
    message = MessageToDict(encode_spans(exporter.get_finished_spans()), use_integers_for_enums=True)
    for resource_spans in message.get("resourceSpans", []):
        for scope_spans in resource_spans.get("scopeSpans", []):
            for span in scope_spans.get("spans", []):
                for field in ("traceId", "spanId", "parentSpanId"):
                    if field in span:
                        span[field] = base64.b64decode(span[field]).hex()
    return message
