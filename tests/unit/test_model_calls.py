"""Which façade a session turn's model calls go through: the one heard from most recently, if recently enough."""

from __future__ import annotations

from ray_runtime.sessions.model_calls import ANNOUNCE_EVERY_S, current_facade


def test_the_facade_heard_from_last_is_used_and_silent_ones_are_not():
    now = 10_000.0
    entries = {
        "a": {"url": "http://a:8080", "at": now - 5},
        "b": {"url": "http://b:8080", "at": now - 1},
        "gone": {"url": "http://gone:8080", "at": now - 4 * ANNOUNCE_EVERY_S},
        "junk": "not a record",
    }
    assert current_facade(entries, now) == "http://b:8080"
    assert current_facade({"gone": entries["gone"]}, now) is None
    assert current_facade({}, now) is None
