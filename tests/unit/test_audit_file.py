"""The audit log's file: each entry readable at once, one per line, and a rotated file is followed by its name."""

from __future__ import annotations

import json
from pathlib import Path

from ray_runtime.api.audit import AuditLog


def _entries(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _record(audit: AuditLog, status: int) -> None:
    audit.record(key_id="k1", tenant="acme", method="POST", path="/v1/queues/q/tasks", status=status)


def test_each_entry_is_on_disk_as_soon_as_it_is_recorded(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    audit = AuditLog.file(path)
    try:
        _record(audit, 201)
        assert [e["status"] for e in _entries(path)] == [201]
        _record(audit, 404)
        assert [(e["status"], e["outcome"]) for e in _entries(path)] == [(201, "ok"), (404, "refused")]
    finally:
        audit.close()


def test_a_rotated_audit_file_is_followed_by_its_name(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    audit = AuditLog.file(path)
    try:
        _record(audit, 201)
        path.rename(tmp_path / "audit.jsonl.1")
        _record(audit, 202)
        assert [e["status"] for e in _entries(tmp_path / "audit.jsonl.1")] == [201]
        assert [e["status"] for e in _entries(path)] == [202]
        path.unlink()
        _record(audit, 203)
        assert [e["status"] for e in _entries(path)] == [203]
    finally:
        audit.close()


def test_recording_after_close_opens_the_file_again(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    audit = AuditLog.file(path)
    _record(audit, 201)
    audit.close()
    _record(audit, 500)
    audit.close()
    assert [(e["status"], e["outcome"]) for e in _entries(path)] == [(201, "ok"), (500, "error")]
