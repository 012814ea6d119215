"""The authoring API: signatures from type hints, validation naming every field, streaming, async, classes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest
from pydantic import BaseModel, Field

from ray_runtime.errors import BadRequestError, ValidationError
from ray_runtime.plugins.action import Context, LoadedAction, Reporter, action, bind


class Point(BaseModel):
    x: int
    y: int = Field(ge=0)


class Area(BaseModel):
    value: int


def with_model(params: Point, ctx: Context) -> Area:
    ctx.progress(1, 1, "done")
    return Area(value=params.x * params.y)


def with_keywords(n: int, label: str = "n", ctx=None) -> dict:
    return {label: n, "mode": ctx.mode}


def counting(n: int) -> Iterator[int]:
    yield from range(n)


async def slow_double(n: int) -> int:
    await asyncio.sleep(0)
    return 2 * n


async def async_counting(n: int) -> AsyncIterator[int]:
    for i in range(n):
        yield i


class Counter:
    """A class action: built once, called per run."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, step: int = 1) -> int:
        self.calls += step
        return self.calls


class Recorder(Reporter):
    def __init__(self) -> None:
        self.events = []

    def progress(self, ctx, done, total, message):
        self.events.append((done, total, message))


def loaded(target, name="a") -> LoadedAction:
    return LoadedAction("p", name, target)


def test_a_model_parameter_is_the_params_model_and_the_result_is_dumped():
    recorder = Recorder()
    action_ = loaded(with_model)
    assert action_.signature.params_model is Point and action_.signature.context_param == "ctx"
    assert action_.run({"x": 3, "y": 4}, action_.context("task", reporter=recorder)) == {"value": 12}
    assert recorder.events == [(1, 1, "done")]


def test_keyword_parameters_become_a_strict_model_and_ctx_is_found_by_name():
    action_ = loaded(with_keywords)
    assert action_.run('{"n": 2}', action_.context("job")) == {"n": 2, "mode": "job"}
    with pytest.raises(ValidationError) as info:
        action_.run({"n": "two", "extra": True}, action_.context("job"))
    assert {e["field"] for e in info.value.details["errors"]} == {"n", "extra"}


def test_every_bad_field_is_named_at_once_and_bad_json_is_a_bad_request():
    action_ = loaded(with_model)
    with pytest.raises(ValidationError) as info:
        action_.signature.validate({"y": -1})
    assert {e["field"] for e in info.value.details["errors"]} == {"x", "y"}
    assert info.value.http_status == 422
    with pytest.raises(BadRequestError, match="not valid JSON"):
        action_.signature.validate(b"{not json")


def test_generators_stream_and_collect_into_a_list():
    action_ = loaded(counting)
    assert action_.signature.streaming
    assert list(action_.stream({"n": 3}, action_.context("serve"))) == [0, 1, 2]
    assert action_.run({"n": 2}, action_.context("task")) == [0, 1]


def test_async_actions_and_async_generators_run_from_sync_and_async_callers():
    double, count = loaded(slow_double), loaded(async_counting)
    assert double.run({"n": 4}, double.context("task")) == 8
    assert list(count.stream({"n": 3}, count.context("job"))) == [0, 1, 2]

    async def from_a_loop():
        chunks = [c async for c in count.astream({"n": 2}, count.context("serve"))]
        return await double.arun({"n": 5}, double.context("serve")), chunks

    assert asyncio.run(from_a_loop()) == (10, [0, 1])


def test_sync_actions_run_off_the_event_loop():
    seen = []

    def record_thread(x: int) -> int:
        import threading

        seen.append(threading.current_thread() is threading.main_thread())
        return x

    action_ = loaded(record_thread)
    assert asyncio.run(action_.arun({"x": 1}, action_.context("serve"))) == 1
    assert seen == [False]


def test_a_class_action_is_built_once_and_called_per_run():
    action_ = loaded(Counter)
    ctx = action_.context("worker")
    assert [action_.run({"step": 2}, ctx) for _ in range(3)] == [2, 4, 6]


def test_the_decorator_checks_signatures_at_import_time():
    with pytest.raises(TypeError, match="plain"):

        @action
        def bad(*numbers: int) -> int:
            return sum(numbers)

    @action(description="adds")
    def add(a: int, b: int) -> int:
        return a + b

    assert loaded(add).description == "adds" and bind(add).fields == ("a", "b")
