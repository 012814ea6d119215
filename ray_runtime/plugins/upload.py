"""Getting a plugin package into the cluster (skipped when the cluster already holds the same bytes).

Two routes, one rule: inside a Ray driver or worker the package goes straight to GCS; from outside, through the
dashboard's package endpoint, as ``ray job submit`` does. Both use Ray's own helpers, wrapped here only.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from ray_runtime.plugins.manifest import Plugin
from ray_runtime.plugins.package import PluginPackage, build_package

__all__ = ["ensure_uploaded", "package_for"]

_VERIFIED_FOR_S = 60.0
_verified: dict[str, float] = {}
_packages: dict[Path, tuple[tuple[Any, ...], PluginPackage]] = {}
_lock = threading.Lock()


def _tree_signature(root: Path) -> tuple[Any, ...]:
    entries = []
    for directory, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in ("__pycache__", ".git", ".venv"))
        for name in sorted(files):
            stat = os.stat(os.path.join(directory, name))
            entries.append((directory, name, stat.st_mtime_ns, stat.st_size))
    return tuple(entries)


def package_for(plugin: Plugin) -> PluginPackage:
    """The plugin's package, rebuilt only when a file in its folder changed since the last call."""
    signature = _tree_signature(plugin.path)
    with _lock:
        cached = _packages.get(plugin.path)
        if cached is not None and cached[0] == signature:
            return cached[1]
    package = build_package(plugin)
    with _lock:
        _packages[plugin.path] = (signature, package)
    return package


def ensure_uploaded(package: PluginPackage, *, submission_client: Any = None) -> str:
    """Upload the package unless the cluster has it; returns its URI for a runtime_env.

    Args:
        submission_client: A ``JobSubmissionClient`` when talking to the cluster from outside (its dashboard);
            None inside a connected Ray process.
    """
    uri = package.uri
    if time.monotonic() - _verified.get(uri, -_VERIFIED_FOR_S) < _VERIFIED_FOR_S:
        return uri
    if submission_client is not None:
        _upload_through_dashboard(submission_client, package)
    else:
        _upload_to_gcs(package)
    _verified[uri] = time.monotonic()
    return uri


def _upload_to_gcs(package: PluginPackage) -> None:
    from ray._private.runtime_env.packaging import package_exists, pin_runtime_env_uri, upload_package_to_gcs

    if not package_exists(package.uri):
        upload_package_to_gcs(package.uri, package.data)
    pin_runtime_env_uri(package.uri)  # keeps it until a task, actor or job references it


def _upload_through_dashboard(client: Any, package: PluginPackage) -> None:
    if client._package_exists(package.uri):
        return
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / package.uri.rsplit("/", 1)[-1]
        path.write_bytes(package.data)
        client._upload_package(package.uri, str(path), include_gitignore=False, is_file=True)
