"""Property-based requests from the façade's own OpenAPI schema: whatever they send, no 5xx comes back.

Operations that would launch work (job submission, Serve deploys, package uploads) or sleep (claims and waits that
long-poll) are left out: generated entrypoints are shell commands, and generated waits take up to a minute.
(Schemathesis drives hypothesis per operation here; its pytest plugin does not support this pytest.)
"""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error


def test_no_request_gets_a_server_error(facade):
    schema = (
        schemathesis.openapi.from_url(f"{facade.url}/openapi.json")
        .exclude(method="POST", path="/api/v1/jobs")
        .exclude(method="POST", path="/api/jobs/")
        .exclude(method="PUT", path_regex=r"^/api/(v1/serve/applications|packages)/")
        .exclude(path_regex=r"/claim$")
        .exclude(path="/api/v1/tasks/wait")
    )
    headers = facade.headers("alpha")
    tried = 0
    for result in schema.get_all_operations():
        operation = result.ok()

        @settings(max_examples=12, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy())
        def no_server_error(case: schemathesis.Case) -> None:
            response = case.call(headers=headers, timeout=60)
            case.validate_response(response, checks=[not_a_server_error])

        no_server_error()
        tried += 1
    assert tried >= 30
