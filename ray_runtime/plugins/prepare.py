"""One way to get an action ready to run, whatever the mode: resolve the plugin, check the mode, pack the folder,
put the package in the cluster, and build the runtime_env it runs in.

Job submission, task runs, queue workers and Serve deployments all start here, so every mode runs the same bytes
in the same environment. Nothing here imports the plugin's own code.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ray_runtime.errors import InvalidArgumentError
from ray_runtime.plugins.manifest import ActionSpec, Mode, Plugin, resolve
from ray_runtime.plugins.package import PluginPackage, runtime_env
from ray_runtime.plugins.upload import ensure_uploaded, package_for

__all__ = ["PreparedAction", "prepare"]


@dataclass(frozen=True)
class PreparedAction:
    """An action whose package is in the cluster: everything a mode needs to start it."""

    plugin: Plugin
    spec: ActionSpec
    package: PluginPackage
    runtime_env: dict[str, Any]

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def version(self) -> str:
        """The plugin's version, as its manifest says."""
        return self.plugin.manifest.version


def prepare(
    plugin: Plugin | str | Path,
    action: str,
    mode: Mode | None,
    *,
    submission_client: Any = None,
    env_vars: dict[str, str] | None = None,
    py_modules: list[str] | None = None,
    upload: bool = True,
) -> PreparedAction:
    """Get ``plugin``'s ``action`` ready to run in ``mode`` (None: any of its modes).

    Args:
        plugin: A :class:`Plugin`, a plugin folder, or a plugin name under ``./plugins``.
        submission_client: A ``JobSubmissionClient`` (or Serve's) when talking to the cluster from outside;
            None inside a connected Ray process (the package goes straight to GCS).
        env_vars: Extra environment variables for the runtime_env (the manifest's come first).
        py_modules: Extra modules shipped along (e.g. ray_runtime itself, to a cluster that lacks it).
        upload: Put the package in the cluster (False: only compute its URI, e.g. to write a Serve config).

    Raises:
        PluginNotFoundError: No such plugin or action.
        InvalidArgumentError: The action does not run in ``mode``.
        PackageError / PackageTooLargeError: The folder cannot be packed.
    """
    resolved = resolve(plugin)
    spec = resolved.action(action)
    if mode is not None and mode not in spec.modes:
        modes = ", ".join(spec.modes)
        raise InvalidArgumentError(
            "action", f"{resolved.name}/{action} does not run in {mode} mode (it runs in: {modes})"
        )
    package = package_for(resolved)
    if upload:
        ensure_uploaded(package, submission_client=submission_client)
    env = runtime_env(resolved, package, env_vars=env_vars, py_modules=py_modules)
    return PreparedAction(resolved, spec, package, env)
