"""Task mode from a driver, and job mode through the stock `ray job submit`, the CLI and the SDK."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

import ray_runtime as rr
import ray_runtime.plugins as plugins
from ray_runtime.errors import ActionFailedError, ValidationError

from ..conftest import FIXTURE_PLUGINS, PLUGINS
from ..waiting import wait_until

RAY = str(Path(sys.executable).parent / "ray")


def wait_for_job(dashboard: str, submission_id: str, timeout_s: float = 180) -> str:
    from ray.job_submission import JobSubmissionClient

    client = JobSubmissionClient(dashboard)
    ended = ("SUCCEEDED", "FAILED", "STOPPED")
    return wait_until(
        lambda: (status := client.get_job_status(submission_id).value) in ended and status,
        timeout_s,
        interval_s=0.2,
        what=f"job {submission_id} to end",
    )


def job_logs(dashboard: str, submission_id: str) -> str:
    from ray.job_submission import JobSubmissionClient

    return JobSubmissionClient(dashboard).get_job_logs(submission_id)


# ------------------------------------------------------------------------------------------------ task


def test_task_mode_returns_the_typed_result_in_the_plugins_runtime_env(ray_cluster, session_coordinator):
    reply = plugins.run(PLUGINS / "hello", "greet", {"name": "Ada", "excited": True})
    assert type(reply).__name__ == "Reply"
    assert reply.message == "Hello, Ada!" and reply.mode == "task"  # HELLO_SALUTATION comes from plugin.yaml


def expected_word_counts() -> Counter:
    words = (
        w.strip(".,;:!?\"'()[]").lower()
        for f in (PLUGINS / "wordcount" / "data").glob("*.txt")
        for w in f.read_text().split()
    )
    return Counter(w for w in words if w)


def test_task_mode_runs_a_fan_out_action_and_a_streaming_one(ray_cluster, session_coordinator):
    counts = plugins.run(PLUGINS / "wordcount", "count", {"top": 3})
    expected = expected_word_counts()
    assert len(counts.files) == 4 and counts.total_words == sum(expected.values())
    assert counts.top == expected.most_common(3) and counts.distinct_words == len(expected)
    chunks = plugins.run(PLUGINS / "textstats", "sentences", {"text": "One two. Three four five! Six?"})
    assert [c.words for c in chunks] == [2, 3, 1]


def test_task_mode_refuses_bad_params_before_submitting(ray_cluster):
    with pytest.raises(ValidationError) as info:
        plugins.run(PLUGINS / "hello", "greet", {"times": 11})
    assert {e["field"] for e in info.value.details["errors"]} == {"name", "times"}


def test_a_failing_action_raises_action_failed_with_its_type_and_traceback(ray_cluster):
    with pytest.raises(ActionFailedError) as info:
        plugins.run(FIXTURE_PLUGINS / "failing", "explode", {"reason": "task mode"})
    assert info.value.details["type"] == "ExplosionError"
    assert "boom: task mode" in info.value.message and "raise ExplosionError" in info.value.details["traceback"]


async def test_the_async_twin_runs_tasks_concurrently(ray_cluster, tmp_path):
    import asyncio

    slow = FIXTURE_PLUGINS / "failing"
    params = {"seconds": 0, "meet": str(tmp_path), "parties": 4}  # each waits until all four have arrived
    replies = await asyncio.gather(*(plugins.arun(slow, "slow", params) for _ in range(4)))
    assert replies == [4] * 4, "the tasks ran one after another: the first never met the others"


def test_an_async_action_reads_its_resources_in_task_mode(coord):
    coord.resources.add({"prompt": rr.PromptTemplate(template="{q}"), "cfg": {"resource_type": "json", "value": 1}})
    assert plugins.run(FIXTURE_PLUGINS / "twin_a", "resources_async", tenant=coord.tenant) == ["cfg", "prompt"]


# ------------------------------------------------------------------------------------------------- job


def test_an_async_action_reads_its_resources_in_job_mode(ray_cluster, coord):
    coord.resources.add({"cfg": {"resource_type": "json", "value": 1}})
    submission_id = plugins.submit_job(
        FIXTURE_PLUGINS / "twin_b", "resources_async", {}, address=ray_cluster["dashboard"], tenant=coord.tenant
    )
    assert wait_for_job(ray_cluster["dashboard"], submission_id) == "SUCCEEDED", job_logs(
        ray_cluster["dashboard"], submission_id
    )
    assert coord.runs.get(submission_id).result == ["cfg"]


def test_stock_ray_job_submit_runs_an_action_and_records_the_typed_result(ray_cluster, session_coordinator, tmp_path):
    plugin = tmp_path / "hello"
    shutil.copytree(PLUGINS / "hello", plugin)
    (plugin / "params.json").write_text(json.dumps({"name": "Linus", "times": 2}))
    submission_id = "raysubmit_stock_cli_1"
    done = subprocess.run(
        [
            RAY,
            "job",
            "submit",
            "--address",
            ray_cluster["dashboard"],
            "--submission-id",
            submission_id,
            "--working-dir",
            str(plugin),
            "--no-wait",
            "--",
            "python",
            "-m",
            "ray_runtime",
            "run",
            ".",
            "greet",
            "--params",
            "@params.json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert wait_for_job(ray_cluster["dashboard"], submission_id) == "SUCCEEDED"
    run = session_coordinator.runs.get(submission_id)
    assert run.status == "succeeded" and run.plugin == "hello" and run.params["name"] == "Linus"
    assert run.result == {"message": "Hello, Linus. Hello, Linus.", "mode": "job"}
    assert run.progress.done == 2 and run.progress.total == 2


def test_bad_params_are_refused_before_submitting_or_fail_the_job_with_exit_code_2(ray_cluster, session_coordinator):
    with pytest.raises(ValidationError):  # the plugin imports here, so nothing is submitted
        plugins.submit_job(PLUGINS / "textstats", "analyze", {"top": -1}, address=ray_cluster["dashboard"])
    submission_id = "raysubmit_bad_params"
    subprocess.run(
        [
            RAY,
            "job",
            "submit",
            "--address",
            ray_cluster["dashboard"],
            "--submission-id",
            submission_id,
            "--working-dir",
            str(PLUGINS / "textstats"),
            "--no-wait",
            "--",
            "python",
            "-m",
            "ray_runtime",
            "run",
            ".",
            "analyze",
            "--params",
            '{"top": -1}',
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    assert wait_for_job(ray_cluster["dashboard"], submission_id) == "FAILED"
    logs = job_logs(ray_cluster["dashboard"], submission_id)
    assert "text: Field required" in logs and "top: Input should be greater than or equal to 0" in logs
    from ray.job_submission import JobSubmissionClient

    assert "exit code 2" in (JobSubmissionClient(ray_cluster["dashboard"]).get_job_info(submission_id).message or "")
    from ray_runtime.errors import RunNotFoundError

    with pytest.raises(RunNotFoundError):  # nothing ran, so nothing was recorded
        session_coordinator.runs.get(submission_id)


def test_a_failing_job_records_the_error_and_its_progress(ray_cluster, session_coordinator):
    submission_id = plugins.submit_job(
        FIXTURE_PLUGINS / "failing", "explode", {"reason": "job mode", "after": 3}, address=ray_cluster["dashboard"]
    )
    assert wait_for_job(ray_cluster["dashboard"], submission_id) == "FAILED"
    run = session_coordinator.runs.get(submission_id)
    assert run.status == "failed" and run.error.type == "ExplosionError" and "boom: job mode" in run.error.message
    assert run.progress.done == 3


def test_cli_plugin_submit_follows_progress_to_the_end_and_the_result_is_data(ray_cluster, session_coordinator):
    submission_id = "raysubmit_cli_wordcount"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "ray_runtime",
            "plugin",
            "submit",
            str(PLUGINS / "wordcount"),
            "count",
            "--params",
            '{"top": 2}',
            "--address",
            ray_cluster["dashboard"],
            "--submission-id",
            submission_id,
        ],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCEEDED" in done.stdout and "counted" in done.stdout
    run = session_coordinator.runs.get(submission_id)
    assert run.result["total_words"] == sum(expected_word_counts().values())
    assert [tuple(pair) for pair in run.result["top"]] == expected_word_counts().most_common(2)
    assert [event.done for event in run.events][-1] == 4 and run.progress.total == 4


def test_ray_runtime_can_travel_with_the_job_in_py_modules(ray_cluster, session_coordinator):
    from ray.job_submission import JobSubmissionClient

    submission_id = plugins.submit_job(
        PLUGINS / "hello", "greet", {"name": "shipped"}, address=ray_cluster["dashboard"], ship_ray_runtime=True
    )
    assert wait_for_job(ray_cluster["dashboard"], submission_id) == "SUCCEEDED"
    runtime_env = JobSubmissionClient(ray_cluster["dashboard"]).get_job_info(submission_id).runtime_env
    assert runtime_env["py_modules"] and runtime_env["py_modules"][0].startswith("gcs://")
    assert session_coordinator.runs.get(submission_id).result["message"] == "Hello, shipped."
