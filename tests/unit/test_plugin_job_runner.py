"""The job entrypoint outside Ray: exit codes 0 / 1 / 2, params from a file, nothing run on bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from ray_runtime.plugins.job import EXIT_ACTION_FAILED, EXIT_BAD_INPUT, EXIT_OK, JobOptions, run_job

from ..conftest import FIXTURE_PLUGINS, PLUGINS

LOCAL = JobOptions(record=False)


def test_a_good_run_prints_progress_and_the_result(capsys):
    code = run_job(str(PLUGINS / "hello"), "greet", '{"name": "Ada", "times": 2}', LOCAL)
    out = capsys.readouterr().out
    assert code == EXIT_OK
    assert "[progress] 2/2 greeted" in out and '"message": "Hello, Ada. Hello, Ada."' in out


def test_params_can_come_from_a_file(tmp_path, capsys):
    params = tmp_path / "params.json"
    params.write_text(json.dumps({"name": "Grace", "excited": True}))
    assert run_job(str(PLUGINS / "hello"), "greet", f"@{params}", LOCAL) == EXIT_OK
    assert "Grace!" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("plugin", "action", "params", "message"),
    [
        (PLUGINS / "hello", "greet", '{"times": 0}', "name: Field required; times: Input should be greater"),
        (PLUGINS / "hello", "greet", "{oops", "not valid JSON"),
        (PLUGINS / "hello", "nope", "{}", "has no action 'nope'"),
        (PLUGINS / "textstats", "sentences", '{"text": "a"}', "does not run in job mode"),
        (FIXTURE_PLUGINS / "broken", "run", "{}", "plugin.yaml"),
        (PLUGINS / "hello", "greet", "@/nonexistent/params.json", "cannot read params"),
    ],
)
def test_bad_input_exits_2_with_a_message_and_runs_nothing(plugin, action, params, message, capsys):
    assert run_job(str(plugin), action, params, LOCAL) == EXIT_BAD_INPUT
    captured = capsys.readouterr()
    assert message in captured.err and "[run]" not in captured.out


def test_an_action_that_raises_exits_1_with_its_traceback(capsys):
    code = run_job(str(FIXTURE_PLUGINS / "failing"), "explode", '{"reason": "on purpose"}', LOCAL)
    assert code == EXIT_ACTION_FAILED
    assert "ExplosionError: boom: on purpose" in capsys.readouterr().err


def test_python_dash_m_ray_runtime_run_is_the_same_command():
    done = subprocess.run(
        [sys.executable, "-m", "ray_runtime", "run", ".", "greet", "--params", '{"name": "Ada"}', "--no-record"],
        cwd=PLUGINS / "hello",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert '[result] {"message": "Hello, Ada.", "mode": "job"}' in done.stdout
