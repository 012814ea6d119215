"""Schemathesis over every operation of the façade's own OpenAPI: its coverage and fuzzing phases, and the stateful
phase over the links the schema declares (create, then read), with a fixed seed. Nothing may answer 5xx, and every
answer must match the schema (status codes, content types, bodies).

The key is a fresh tenant admin's without ``run_code``: generated shell commands, import paths and packages are
refused (403) rather than run. Left out: long polls (claims, waits: a generated wait takes up to a minute) and
revoking keys (the stateful phase follows ``GET /keys`` to ``DELETE /keys/{id}`` and revokes its own key, after
which everything is a 401). ``make fuzz`` runs the same for longer.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ..conftest import unique

CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"


def schemathesis_run(
    url: str, key: str, *, max_examples: int, max_time_s: int, report: Path
) -> subprocess.CompletedProcess:
    command = [
        str(Path(sys.executable).parent / "schemathesis"),
        "run",
        f"{url}/openapi.json",
        "--phases=coverage,fuzzing,stateful",
        f"--checks={CHECKS}",
        "--seed=20261201",
        f"--max-examples={max_examples}",
        f"--max-time={max_time_s}",
        "--request-timeout=60",
        "--workers=1",  # CPython 3.11 compile() is not thread-safe under schemathesis workers (AST depth mismatch)
        "--exclude-path-regex=/claim$",
        "--exclude-path=/api/v1/tasks/wait",
        "--exclude-path=/api/v1/keys/{key_id}",
        "--suppress-health-check=all",
        "--no-color",
        "-H",
        f"Authorization: Bearer {key}",
        "--report=junit",
        f"--report-junit-path={report}",
    ]
    env = {**os.environ, "SCHEMATHESIS_HOOKS": ""}
    return subprocess.run(command, capture_output=True, text=True, timeout=max_time_s + 300, env=env)


def fuzz_key(facade) -> str:
    """An admin key of a tenant of its own, so nothing fuzzed touches what other tests use."""
    with facade.client("root") as root:
        created = root.post("/api/v1/keys", json={"tenant": unique("fuzz"), "scope": "admin", "name": "fuzz"})
    return created.json()["key"]


FUZZ_S = int(os.environ.get("RAY_RUNTIME_FUZZ_S", "60"))  # `make fuzz` sets 1200


@pytest.mark.timeout(FUZZ_S + 600)
def test_every_operation_survives_schemathesis(facade, tmp_path):
    examples = 5 if FUZZ_S <= 60 else 100
    done = schemathesis_run(
        facade.url, fuzz_key(facade), max_examples=examples, max_time_s=FUZZ_S, report=tmp_path / "j.xml"
    )
    tail = done.stdout[-20000:]
    assert done.returncode == 0, tail
    assert "401 Unauthorized" not in done.stdout, tail  # the key worked throughout (403s: the privileged routes)
    covered = re.search(r"API Links:\s+(\d+) covered", done.stdout)
    assert covered is not None and int(covered.group(1)) > 0, tail  # the stateful phase followed links
