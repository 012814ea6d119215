"""The `ray-runtime` commands that go through the façade (job, queue, task, resources) and the key commands, run
with Typer's runner: their output for scripts (--json) and people, exit codes, and connection settings."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import pytest
from typer.testing import CliRunner

from ray_runtime.cli import app
from ray_runtime.client import RuntimeClient


@pytest.fixture
def cli(facade, monkeypatch, tmp_path):
    """Run a command as the alpha admin; returns (exit code, stdout, stderr)."""
    monkeypatch.setenv("RAY_RUNTIME_URL", facade.url)
    monkeypatch.setenv("RAY_RUNTIME_API_KEY", facade.keys["alpha"])
    monkeypatch.setenv("RAY_RUNTIME_CONFIG", str(tmp_path / "absent.toml"))
    monkeypatch.setenv("RAY_RUNTIME_LOCAL_DIR", str(tmp_path / "no-local-runtime"))
    monkeypatch.setenv("COLUMNS", "200")
    runner = CliRunner()

    def run(*args: str, input: str | None = None) -> tuple[int, str, str]:
        result = runner.invoke(app, list(args), input=input)
        if result.exception and not isinstance(result.exception, SystemExit):
            raise result.exception
        return result.exit_code, result.stdout, result.stderr

    return run


def data(output: str):
    return json.loads(output)


def test_job_submit_follow_get_list_logs_stop_delete(cli):
    code, out, _ = cli("job", "submit", "wordcount", "count", "-p", '{"top": 2}', "--metadata", "origin=cli", "-f")
    assert code == 0, out
    assert "SUCCEEDED" in out and '"total_words": 978' in out and "[progress]" not in out  # progress is a bar
    code, out, _ = cli("job", "list", "--plugin", "wordcount", "--json")
    [job_id] = [j["submission_id"] for j in data(out) if j["metadata"].get("origin") == "cli"]
    code, out, _ = cli("job", "get", job_id, "--json")
    assert code == 0 and data(out)["run"]["result"]["total_words"] == 978
    code, out, _ = cli("job", "get", job_id)
    assert "progress" in out and "4/4" in out and "SUCCEEDED" in out
    code, out, _ = cli("job", "logs", job_id)
    assert code == 0 and "[result]" in out
    assert cli("job", "delete", job_id)[0] == 0
    code, _, err = cli("job", "get", job_id)
    assert code == 2 and "does not exist" in err

    code, out, _ = cli("job", "submit", "--entrypoint", "echo before; exit 3", "-f", "--json")
    assert code == 1 and data(out)["status"] == "FAILED"
    code, out, _ = cli("job", "submit", "--entrypoint", "sleep 300", "--json")
    sleeper = data(out)["submission_id"]
    code, out, _ = cli("job", "stop", sleeper, "--json")
    assert code == 0 and data(out)["status"] == "STOPPED"


def test_bad_input_gets_exit_2_and_says_what_to_fix(cli):
    code, _, err = cli("job", "submit", "wordcount", "count", "-p", "{not json")
    assert code == 2 and "--params is not valid JSON" in err
    code, _, err = cli("job", "submit", "wordcount", "count", "-p", '{"top": 0}')
    assert code == 2 and "top" in err
    code, _, err = cli("job", "submit", "wordcount")
    assert code == 2 and "PLUGIN ACTION" in err
    code, _, err = cli("queue", "enqueue", "bad queue!", "1")
    assert code == 2 and "queue" in err
    code, _, err = cli("job", "list", "--api-key", "rrk_nokey_nosecret")
    assert code == 2 and "hint:" in err and "RAY_RUNTIME_API_KEY" in err
    code, _, err = cli("job", "list", "--url", "http://127.0.0.1:9")
    assert code == 3 and "cannot reach" in err


def test_queue_and_task_commands(cli, tmp_path):
    queue = f"cli-{uuid.uuid4().hex[:8]}"
    code, out, _ = cli("queue", "enqueue", queue, '{"n": 1}', "--priority", "5", "--json")
    assert code == 0
    first = data(out)["task_id"]
    lines = tmp_path / "tasks.jsonl"
    lines.write_text("\n".join(json.dumps({"n": n}) for n in range(2, 2502)) + "\n")
    code, out, _ = cli("queue", "enqueue", queue, "--jsonl", str(lines), "--json")
    assert code == 0 and len(data(out)["task_ids"]) == 2500  # sent in batches
    code, out, _ = cli("queue", "stats", queue, "--json")
    assert data(out)["counts"]["queued"] == 2501
    assert queue in data(cli("queue", "list", "--json")[1])

    code, out, _ = cli("task", "get", first, "--json")
    assert data(out)["input"] == {"n": 1} and data(out)["priority"] == 5
    code, out, _ = cli("task", "list", "--queue", queue, "--limit", "1000", "--all", "--json")
    assert len(data(out)) == 2501 and data(out)[0]["id"] == first
    assert data(cli("task", "cancel", first, "--json")[1])["status"] == "cancelled"
    code, out, _ = cli("task", "wait", first, "--timeout", "5", "--json")
    assert code == 1 and data(out)[0]["status"] == "cancelled"  # ended, but not succeeded
    assert data(cli("task", "retry", first, "--json")[1])["status"] == "queued"
    code, _, _ = cli("task", "wait", first, "--timeout", "0.5")
    assert code == 4  # still queued: timed out
    code, out, _ = cli("queue", "purge", queue, "--yes")
    assert code == 0 and "cancelled 2501" in out
    code, _, err = cli("task", "get", "task_00000000000000000000000000")
    assert code == 2 and "task_00000000000000000000000000" in err


def test_resources_commands(cli, tmp_path):
    llm = {"llm": {"resource_type": "llm", "endpoint": "http://llm:8000/v1", "model": "tiny"}}
    code, out, _ = cli("resources", "add", json.dumps(llm), "--json")
    assert code == 0
    first = data(out)
    prompt = tmp_path / "prompt.json"
    prompt.write_text(json.dumps({"prompt": {"resource_type": "prompt_template", "template": "Q: {q}"}}))
    code, out, _ = cli("resources", "add", f"@{prompt}", "--merge", "--json")
    merged = data(out)
    assert set(merged["resources"]) == {"llm", "prompt"} and merged["version"] == first["version"] + 1
    assert data(cli("resources", "latest", "--json")[1])["resources_id"] == merged["resources_id"]
    assert data(cli("resources", "get", first["resources_id"], "--json")[1])["resources"] == first["resources"]
    history = data(cli("resources", "history", "--limit", "2", "--json")[1])
    assert [h["resources_id"] for h in history] == [merged["resources_id"], first["resources_id"]]
    code, out, _ = cli("resources", "latest")
    assert "prompt_template" in out and "Q: {q}" in out
    code, _, err = cli("resources", "add", '{"x": {"resource_type": "nope"}}')
    assert code == 2 and "resources are not valid" in err and "nope" in err


def test_connection_from_a_config_file(cli, facade, monkeypatch, tmp_path):
    monkeypatch.delenv("RAY_RUNTIME_URL")
    monkeypatch.delenv("RAY_RUNTIME_API_KEY")
    code, _, err = cli("queue", "list")
    assert code == 3 and "ray-runtime up" in err  # nothing configured: says how to configure
    config = tmp_path / "config.toml"
    config.write_text(f'url = "{facade.url}"\napi_key = "{facade.keys["beta"]}"\n')
    monkeypatch.setenv("RAY_RUNTIME_CONFIG", str(config))
    code, out, _ = cli("resources", "history", "--json")
    assert code == 0 and isinstance(data(out), list)
    code, _, err = cli("queue", "list", "--tenant", "alpha")  # the beta key cannot act for alpha
    assert code == 2 and "acts for tenant 'beta'" in err


def test_keys_commands_on_the_cluster(cli, facade):
    code, out, _ = cli("keys", "create", "--tenant", "gamma", "--scope", "read", "--name", "cli-test", "--json")
    assert code == 0
    created = data(out)
    key_id = created["info"]["key_id"]
    code, out, _ = cli("keys", "list", "--tenant", "gamma")
    assert key_id in out and created["key"] not in out  # never the secret
    code, out, _ = cli("queue", "list", "--api-key", created["key"], "--json")
    assert code == 0 and data(out) == []
    assert cli("keys", "revoke", key_id)[0] == 0
    code, _, err = cli("queue", "list", "--api-key", created["key"])
    assert code == 2 and "revoked" in err
    code, _, err = cli("keys", "create", "--tenant", "gamma", "--scope", "root")
    assert code == 2 and "scope" in err


def test_bootstrap_key_is_written_once_to_a_private_file(cli, tmp_path):
    tenant = f"boot-{uuid.uuid4().hex[:6]}"
    target = tmp_path / "keys" / "admin_key"
    args = ("keys", "create", "--tenant", tenant, "--scope", "admin", "--if-none", "--output", str(target))
    code, out, _ = cli(*args)
    assert code == 0 and "written to" in out
    key = target.read_text().strip()
    assert key.startswith("rrk_") and key not in out and (target.stat().st_mode & 0o777) == 0o600
    code, out, _ = cli(*args)  # a second boot of the head: the key stays as it is
    assert code == 0 and "already has a live admin key" in out and target.read_text().strip() == key


def test_a_client_only_install_runs_the_facade_commands_and_says_what_the_others_need(facade):
    script = """
import sys

class NotInstalled:  # as on a laptop with `pip install ray-runtime` (no cluster extra)
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {"ray", "fastapi", "starlette", "uvicorn", "yaml", "cloudpickle", "psutil"}:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)

sys.meta_path.insert(0, NotInstalled())
from ray_runtime.cli import main

sys.argv = ["ray-runtime", *sys.argv[1:]]
main()
"""
    env = {**os.environ, "RAY_RUNTIME_URL": facade.url, "RAY_RUNTIME_API_KEY": facade.keys["alpha"]}

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, env=env)

    listed = run("queue", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert isinstance(json.loads(listed.stdout), list)
    refused = run("keys", "list")
    assert refused.returncode == 2 and "pip install 'ray-runtime[cluster]'" in refused.stderr


def test_cluster_commands_say_which_cluster_they_joined_and_never_guess(ray_cluster, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["RAY_RUNTIME_LOCAL_DIR"] = str(tmp_path / "none")  # no local runtime of a developer's to find
    named = subprocess.run(
        [sys.executable, "-m", "ray_runtime", "keys", "list", "--json", "--address", ray_cluster["address"]],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert named.returncode == 0, named.stderr
    assert f"joined the Ray cluster at {ray_cluster['address']} (--address)" in named.stderr.replace("\n", " ")
    unnamed = subprocess.run(
        [sys.executable, "-m", "ray_runtime", "keys", "list", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    said = unnamed.stderr.replace("\n", " ")
    if unnamed.returncode == 0:  # the session's cluster is the only one on this machine: joined, and said so
        assert "the only Ray cluster running on this machine" in said
    else:  # another Ray runs here too (a developer's): it refuses to pick one
        assert unnamed.returncode == 3 and "none was named" in said, said


def test_template_and_session_commands(cli):
    code, out, _ = cli("template", "list", "--tag", "fixture", "--tag", "dedicated", "--json")
    assert code == 0 and [t["id"] for t in data(out)] == ["agents.mortal", "agents.phoenix"]
    code, out, _ = cli("template", "get", "agents.counter")
    assert code == 0 and "isolation: shared" in out and '"minimum": 0' in out
    tag = uuid.uuid4().hex[:8]
    created = cli("session", "create", "agents.counter", "-c", '{"start": 10}', "--metadata", f"tag={tag}", "--json")
    code, out, _ = created
    assert code == 0, out
    session_id = data(out)["id"]
    code, out, _ = cli("session", "invoke", session_id, "hello", "-d", '{"sleep": 0.1}')
    assert code == 0 and "counter 11" in out and "[progress]" in out and "succeeded in" in out and "2 tokens" in out
    code, out, _ = cli("session", "invoke", session_id, "again", "--json")
    assert code == 0 and data(out)["result"]["count"] == 12
    code, _, err = cli("session", "invoke", session_id, "-d", '{"fail": true}')
    assert code == 1 and "refuses on purpose" in err
    code, out, _ = cli("session", "pause", session_id, "--json")
    assert code == 0 and data(out)["status"] == "paused"
    code, _, err = cli("session", "invoke", session_id, "while paused")
    assert code == 2 and "paused" in err
    assert cli("session", "resume", session_id)[0] == 0
    code, out, _ = cli("session", "fork", session_id, "--json")
    fork_id = data(out)["id"]
    assert code == 0 and data(out)["parent_id"] == session_id
    code, out, _ = cli("session", "list", "--metadata", f"tag={tag}", "--json")
    assert {s["id"] for s in data(out)["items"]} == {session_id, fork_id}
    code, out, _ = cli("session", "list", "--metadata", f"tag={tag}")
    assert session_id in out and fork_id in out and "active" in out
    code, out, _ = cli("session", "get", session_id)
    assert code == 0 and "paused" in out and "resumed" in out
    code, out, _ = cli("session", "transcript", session_id, "--json")
    assert [t["request"].get("text") for t in data(out)] == ["hello", "again", None]
    for each in (fork_id, session_id):
        code, out, _ = cli("session", "close", each, "--json")
        assert code == 0 and data(out)["status"] == "closed"
    code, _, err = cli("session", "create", "agents.counter", "-c", '{"start": -2}')
    assert code == 2 and "start" in err
    code, _, err = cli("session", "get", "ses_00000000000000000000000000")
    assert code == 2 and "does not exist" in err
    for command in (("session", "create", "chat.assistent"), ("chat", "chat.assistent")):  # a typo
        code, _, err = cli(*command)
        assert code == 2 and "no session template 'chat.assistent'" in err, err
        assert "chat.assistant, chat.private" in err and "--plugins-dir" in err  # what there is, and why


def test_listings_piped_at_80_columns_keep_ids_and_headers_whole(facade, tmp_path):
    env = {
        **os.environ,
        "RAY_RUNTIME_URL": facade.url,
        "RAY_RUNTIME_API_KEY": facade.keys["alpha"],
        "RAY_RUNTIME_CONFIG": str(tmp_path / "absent.toml"),
        "RAY_RUNTIME_LOCAL_DIR": str(tmp_path / "no-local-runtime"),
        "COLUMNS": "80",
    }
    tag = uuid.uuid4().hex[:8]
    with RuntimeClient(facade.url, facade.keys["alpha"]) as client:
        sessions = [client.create_session("agents.counter", metadata={"tag": tag}) for _ in range(2)]
        listed = subprocess.run(
            [sys.executable, "-m", "ray_runtime", "session", "list", "--metadata", f"tag={tag}"],
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
        )
        for session in sessions:
            session.close()
    lines = listed.stdout.splitlines()
    assert listed.returncode == 0 and all(len(line) <= 80 for line in lines), listed.stdout
    for session in sessions:
        assert sum(session.id in line for line in lines) == 1  # whole, on one line
    header = next(line for line in lines if "┃" in line)
    assert [cell.strip() for cell in header.strip("┃").split("┃")][:3] == ["id", "template", "status"]
    assert "left out to fit 80 columns" in listed.stdout


class Terminal:
    """A command running in a real pseudo-terminal: type lines, wait for text on its screen."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        import pty

        self._primary, secondary = pty.openpty()
        self.process = subprocess.Popen(args, stdin=secondary, stdout=secondary, stderr=secondary, env=env)
        os.close(secondary)
        self.screen = ""

    def type(self, line: str) -> None:
        os.write(self._primary, line.encode() + b"\r")

    def expect(self, text: str, timeout_s: float = 60) -> str:
        """Read until ``text`` shows (ANSI codes removed); everything read since the last expect."""
        import re
        import select
        import time

        deadline, start = time.monotonic() + timeout_s, len(self.screen)
        while text not in self.screen[start:]:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or (self.process.poll() is not None and not select.select([self._primary], [], [], 0)[0]):
                raise AssertionError(f"{text!r} did not show; the screen ends with:\n{self.screen[-2000:]}")
            if select.select([self._primary], [], [], min(remaining, 0.5))[0]:
                try:
                    chunk = os.read(self._primary, 65536).decode(errors="replace")
                except OSError:  # the command ended and its terminal closed
                    chunk = ""
                self.screen += re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", chunk)
        return self.screen[start:]

    def say(self, line: str, until: str = "you>") -> str:
        """Type a line at the prompt; what the command printed until ``until`` (by default its next prompt)."""
        self.type(line)
        return self.expect(until)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
        self.process.wait(timeout=30)
        os.close(self._primary)


def test_chat_in_a_real_terminal(facade, tmp_path):
    env = {
        **os.environ,
        "RAY_RUNTIME_URL": facade.url,
        "RAY_RUNTIME_API_KEY": facade.keys["alpha"],
        "RAY_RUNTIME_CONFIG": str(tmp_path / "absent.toml"),
        "RAY_RUNTIME_LOCAL_DIR": str(tmp_path / "no-local-runtime"),
        "TERM": "xterm-256color",
        "COLUMNS": "120",
    }
    terminal = Terminal([sys.executable, "-m", "ray_runtime", "chat", "chat.assistant", "--keep"], env)
    try:
        opening = terminal.expect("you>")
        session_id = opening.split("session ", 1)[1].split()[0]
        assert "Nice to meet you, Ada." in terminal.say("My name is Ada")
        answered = terminal.say("What is 6 * 7?")
        assert "calculator" in answered and "42" in answered and "succeeded" in answered and "tokens" in answered
        assert "paused" in terminal.say("/pause")
        assert "active" in terminal.say("/resume")
        assert "Your name is Ada." in terminal.say("What is my name?")  # memory kept across the pause
        forked = terminal.say("/fork")
        assert "now talking to the fork" in forked
        fork_id = forked.split("forked ", 1)[1].split()[0]
        assert "Your name is Ada." in terminal.say("What is my name?")  # the fork has the memory too
        terminal.say("/exit", until="left")
        assert terminal.process.wait(timeout=30) == 0
    finally:
        terminal.close()
    with RuntimeClient(facade.url, facade.keys["alpha"]) as client:
        assert client.get_session(session_id).status == "active" and client.get_session(fork_id).parent_id == session_id
        for each in (session_id, fork_id):
            client.close_session(each)
