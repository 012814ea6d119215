"""plugin.yaml: valid manifests load; invalid ones fail at load naming file, field and problem."""

from __future__ import annotations

import pytest

from ray_runtime.errors import ManifestError, PluginNotFoundError
from ray_runtime.plugins.manifest import PluginRegistry, load

from ..conftest import FIXTURE_PLUGINS, PLUGINS


def test_the_example_plugins_load_with_their_actions_and_modes():
    registry = PluginRegistry(PLUGINS)
    assert sorted(p.name for p in registry) == ["chat", "hello", "rollout", "textstats", "wordcount"]
    greet = registry.get("hello").action("greet")
    assert greet.modes == ["job", "task", "serve", "worker"] and greet.queue == "greetings"
    assert greet.resources.ray_options() == {"num_cpus": 0.1, "num_gpus": 0.0}
    assert registry.get("rollout").action("solve").uses_resources
    assert registry.get("textstats").action("analyze").queue == "textstats.analyze"  # the default queue
    private = registry.get("chat").action("private")
    assert private.modes == ["session"] and private.session.isolation == "dedicated"


def test_an_invalid_manifest_names_the_file_and_every_bad_field():
    with pytest.raises(ManifestError) as info:
        load(FIXTURE_PLUGINS / "broken")
    fields = {e["field"] for e in info.value.details["errors"]}
    assert str(FIXTURE_PLUGINS / "broken" / "plugin.yaml") in info.value.message
    assert {
        "name",
        "version",
        "actions.run.entrypoint",
        "actions.run.modes.1",
        "actions.run.resources.num_cpus",
    } <= fields
    assert "actions.work.unexpected" in fields
    assert "module:callable" in info.value.message


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (None, "no plugin.yaml"),
        ("name: [unclosed", "not valid YAML"),
        ("- just a list", "must be a mapping"),
        ("name: ok\nactions: {}", "at least 1 item"),
        ("name: ok\nactions:\n  Bad Name:\n    entrypoint: m:f", "action name 'Bad Name' must match"),
        ("name: ok\nrequirements: reqs.txt\nactions:\n  a:\n    entrypoint: m:f", None),
    ],
)
def test_malformed_manifests_fail_with_the_problem(tmp_path, text, problem):
    if text is not None:
        (tmp_path / "plugin.yaml").write_text(text)
    if problem is None:  # loads, but the named requirements file is missing when asked for
        with pytest.raises(ManifestError, match=r"reqs\.txt is missing"):
            load(tmp_path).requirements()
        return
    with pytest.raises(ManifestError, match=problem):
        load(tmp_path)


def test_the_registry_keeps_valid_plugins_beside_invalid_ones(tmp_path):
    for name in ("hello", "broken"):
        source = (PLUGINS if name == "hello" else FIXTURE_PLUGINS) / name
        target = tmp_path / name
        target.mkdir()
        for file in source.iterdir():
            if file.is_file():
                (target / file.name).write_bytes(file.read_bytes())
    registry = PluginRegistry(tmp_path)
    assert [p.name for p in registry] == ["hello"] and list(registry.errors) == ["broken"]
    with pytest.raises(PluginNotFoundError, match="broken is invalid"):
        registry.get("broken")
    with pytest.raises(PluginNotFoundError, match=r"has no action 'nope'.*greet"):
        registry.get("hello").action("nope")


def test_the_committed_serve_deploy_config_matches_the_example_plugins():
    import yaml

    from ray_runtime.plugins.serve_deploy import declarative_config

    from ..conftest import ROOT

    committed = yaml.safe_load((ROOT / "serve_apps" / "example_plugins.yaml").read_text())
    assert committed == declarative_config(PluginRegistry(PLUGINS)), (
        "serve_apps/example_plugins.yaml is stale: run `ray-runtime plugin serve-config plugins -o "
        "serve_apps/example_plugins.yaml`"
    )
