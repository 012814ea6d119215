"""deploy/kuberay.yaml: a RayCluster whose state outlives its head pod (the coordinator's in PostgreSQL from a
Secret, Ray's GCS in Redis), with Ray's token auth on every pod, and ray-runtime commands that exist with the
options it passes (no Kubernetes here: the file is read, and its commands are parsed by the CLI)."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from ray_runtime.cli import app

MANIFEST = Path(__file__).resolve().parents[2] / "deploy" / "kuberay.yaml"


@pytest.fixture(scope="module")
def documents() -> dict[str, dict]:
    return {doc["kind"]: doc for doc in yaml.safe_load_all(MANIFEST.read_text())}


def containers(cluster: dict) -> list[dict]:
    pods = [cluster["spec"]["headGroupSpec"], *cluster["spec"]["workerGroupSpecs"]]
    return [c for pod in pods for c in pod["template"]["spec"]["containers"]]


def test_the_state_outlives_the_head_pod(documents):
    cluster = documents["RayCluster"]
    ft = cluster["spec"]["gcsFaultToleranceOptions"]
    assert ft["redisAddress"] and ft["redisPassword"]["valueFrom"]["secretKeyRef"]["name"]
    for container in containers(cluster):  # every Ray process, and the façade, reads the journal URL from a Secret
        env = {e["name"]: e for e in container["env"]}
        url = env["RAY_RUNTIME_JOURNAL_URL"]
        assert "value" not in url and url["valueFrom"]["secretKeyRef"] == {"name": "ray-runtime-postgres", "key": "url"}
    assert cluster["spec"]["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
    workers = cluster["spec"]["workerGroupSpecs"][0]
    assert workers["maxReplicas"] > workers["minReplicas"] >= 1 and cluster["spec"]["enableInTreeAutoscaling"]


def test_every_pod_checks_rays_token(documents):
    for container in containers(documents["RayCluster"]):
        env = {e["name"]: e for e in container["env"]}
        assert env["RAY_AUTH_MODE"]["value"] == "token"
        assert env["RAY_AUTH_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == "ray-runtime-ray-token"
    assert documents["Service"]["metadata"]["name"] == "ray-runtime-api"


def test_its_ray_runtime_commands_parse():
    cluster = yaml.safe_load_all(MANIFEST.read_text()).__next__()
    [facade] = [c for c in containers(cluster) if c["name"] == "facade"]
    invocations = []
    for part in facade["args"][0].replace("&&", ";").split(";"):
        words = shlex.split(part.replace("exec ", ""))
        if "ray-runtime" in words:
            invocations.append(words[words.index("ray-runtime") + 1 :])
    assert [args[:2] for args in invocations] == [["keys", "create"], ["api", "--host"]]
    for args in invocations:
        result = CliRunner().invoke(app, [*args, "--help"])  # parses every option first: unknown ones fail
        assert result.exit_code == 0, (args, result.output)
