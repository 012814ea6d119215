from __future__ import annotations

import json

import pytest

from ray_runtime._ids import new_id
from ray_runtime.coordinator.state import CoordinatorState, Limits, NewTask
from ray_runtime.models import TaskSpec


class Clock:
    """A hand-moved wall clock."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


_DEFAULTS = {name: field.default for name, field in TaskSpec.model_fields.items() if name not in ("input", "metadata")}


def new_task(value=None, **options) -> NewTask:
    """A task as the handle sends it: TaskSpec's defaults, with ``options`` unchecked (the state checks them)."""
    metadata = options.pop("metadata", None)
    return NewTask(
        task_id=options.pop("task_id", None) or new_id("task"),
        input=json.dumps(value),
        metadata=None if metadata is None else json.dumps(metadata),
        **{**_DEFAULTS, **options},
    )


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def limits() -> Limits:
    return Limits(retry_backoff_s=1.0, retry_backoff_max_s=8.0, default_lease_s=10.0, max_payload_bytes=1024)


@pytest.fixture
def state(clock, limits) -> CoordinatorState:
    return CoordinatorState(limits, clock=clock)
