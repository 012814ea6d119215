"""cluster.yaml passes Ray's own cluster-config validation, and the ray_runtime commands it runs on the head exist
with the options it passes (so the file cannot rot as the CLI changes)."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from ray_runtime.cli import app

CLUSTER_YAML = Path(__file__).resolve().parents[2] / "cluster.yaml"


@pytest.fixture(scope="module")
def config() -> dict:
    return yaml.safe_load(CLUSTER_YAML.read_text())


def test_rays_cluster_launcher_accepts_it(config):
    from ray.autoscaler._private.util import prepare_config, validate_config

    prepared = prepare_config(config)
    validate_config(prepared)  # raises on any schema or consistency problem
    workers = prepared["available_node_types"]["cpu-worker"]
    assert workers["max_workers"] > workers["min_workers"] >= 1  # an autoscaling worker group
    assert prepared["available_node_types"][prepared["head_node_type"]]["max_workers"] == 0


def test_every_node_installs_the_project_and_the_head_starts_the_runtime(config):
    assert config["file_mounts"]["~/ray_runtime"] == "."
    assert any("pip install" in c and "ray_runtime[cluster]" in c for c in config["setup_commands"])
    head = " ".join(config["head_start_ray_commands"])
    assert "RAY_RUNTIME_STORAGE=" in head and "ray start --head" in head
    assert "ray-runtime keys create" in head and "--if-none" in head  # a bootstrap key before the façade binds
    assert head.index("ray-runtime keys create") < head.index("ray-runtime api --host 0.0.0.0")
    assert "serve deploy serve_apps/example_plugins.yaml" in head
    assert all("--address=$RAY_HEAD_IP:6379" in c for c in config["worker_start_ray_commands"] if "ray start" in c)


def test_every_node_joins_with_the_clusters_ray_token(config):
    assert config["file_mounts"]["~/ray_runtime_ray_token"] == ".ray-cluster-token"  # one token, on every node
    setup = " ".join(config["setup_commands"])
    assert "export RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH=$HOME/ray_runtime_ray_token" in setup
    assert "chmod 600 ~/ray_runtime_ray_token" in setup
    assert setup.index("RAY_AUTH_MODE") < setup.index("pip install")  # before anything starts Ray
    assert ".ray-cluster-token" in (CLUSTER_YAML.parent / ".gitignore").read_text().split()


def test_its_ray_runtime_commands_parse(config):
    runner = CliRunner()
    invocations = []
    for command in config["head_start_ray_commands"]:
        for part in command.replace("&&", ";").split(";"):
            words = shlex.split(part.split(">")[0].replace("&", ""))
            if "ray-runtime" in words:
                invocations.append(words[words.index("ray-runtime") + 1 :])
    assert len(invocations) == 3  # keys create, api, plugin upload
    for args in invocations:
        result = runner.invoke(app, [*args, "--help"])  # parses every option first: unknown ones fail
        assert result.exit_code == 0, (args, result.output)
