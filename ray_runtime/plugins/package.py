"""Packaging a plugin for Ray: a deterministic zip, its content checksum, and the runtime_env that uses it.

The zip holds the plugin folder minus what ``.gitignore`` files, ``runtime_env.excludes`` in the manifest, and
the usual clutter (``__pycache__``, ``.git``, virtualenvs) leave out. Entries are sorted and time-stamped alike,
so the same content always makes the same bytes and the same ``gcs://_ray_pkg_<sha>.zip`` URI: uploads are
skipped when Ray already holds the package. Nothing outside the folder gets in: a symlink that points out of it
is refused, and so is a package over Ray's 100 MiB working_dir limit.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pathspec

from ray_runtime.errors import PackageError, PackageTooLargeError
from ray_runtime.plugins.manifest import Plugin

__all__ = ["MAX_PACKAGE_BYTES", "PluginPackage", "build_package", "runtime_env"]

MAX_PACKAGE_BYTES = 100 * 2**20  # Ray's limit for a working_dir package in GCS
_ALWAYS_EXCLUDED = ["__pycache__/", "*.pyc", ".git/", ".venv/", "venv/", ".DS_Store", ".pytest_cache/", "*.egg-info/"]
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


@dataclass(frozen=True)
class PluginPackage:
    """A packed plugin: the zip bytes, their checksum, the files in it, and its Ray URI."""

    plugin: str
    version: str
    data: bytes
    sha256: str
    files: tuple[str, ...]

    @property
    def uri(self) -> str:
        """Content-addressed: the same files always give the same URI."""
        return f"gcs://_ray_pkg_{self.sha256[:32]}.zip"

    @property
    def size(self) -> int:
        return len(self.data)

    def write(self, path: str | Path) -> Path:
        """Save the zip (``ray-runtime plugin pack``)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(self.data)
        return path


def _scoped(base: str, line: str) -> str:
    """A pattern of the .gitignore in folder ``base`` (relative to the plugin root), as a root pattern."""
    if base == ".":
        return line
    negation, body = ("!", line[1:]) if line.startswith("!") else ("", line)
    if "/" in body.rstrip("/"):  # anchored to the .gitignore's folder
        return f"{negation}{base}/{body.lstrip('/')}"
    return f"{negation}{base}/**/{body}"  # matches at any depth below it


def _ignore_spec(root: Path, plugin: Plugin) -> pathspec.PathSpec:
    patterns = [*_ALWAYS_EXCLUDED, *plugin.manifest.runtime_env.excludes]
    gitignores = (Path(d) / ".gitignore" for d, _, files in os.walk(root) if ".gitignore" in files)
    for gitignore in sorted(gitignores):
        base = gitignore.parent.relative_to(root).as_posix()
        lines = (line.strip() for line in gitignore.read_text().splitlines())
        patterns += [_scoped(base, line) for line in lines if line and not line.startswith("#")]
    return pathspec.PathSpec.from_lines("gitwildmatch", patterns)


def _files(root: Path, spec: pathspec.PathSpec) -> Iterator[tuple[str, Path]]:
    """(archive name, real path) of every file to pack, in sorted order; refuses escapes."""
    for directory, dirs, files in os.walk(root, followlinks=False):
        here = Path(directory)
        dirs.sort()
        for name in list(dirs):
            path = here / name
            relative = path.relative_to(root).as_posix()
            if spec.match_file(relative + "/"):
                dirs.remove(name)
            elif path.is_symlink():
                _check_inside(root, path, relative)
                dirs.remove(name)  # its target is inside the folder, so it is packed under its real path
        for name in sorted(files):
            path = here / name
            relative = path.relative_to(root).as_posix()
            if spec.match_file(relative):
                continue
            if path.is_symlink():
                _check_inside(root, path, relative)
            if not path.is_file():
                continue
            yield relative, path


def _check_inside(root: Path, path: Path, relative: str) -> None:
    target = path.resolve()
    if not target.is_relative_to(root):
        raise PackageError(
            f"{relative} is a symlink to {target}, outside the plugin folder {root}; copy what it needs into the "
            "folder or install it with the plugin's requirements",
            path=relative,
            target=str(target),
        )


def build_package(plugin: Plugin, *, limit: int = MAX_PACKAGE_BYTES) -> PluginPackage:
    """Pack a plugin folder.

    Raises:
        PackageError: A symlink points outside the folder.
        PackageTooLargeError: The zip is over ``limit`` bytes (Ray's working_dir limit by default).
    """
    root = plugin.path.resolve()
    spec = _ignore_spec(root, plugin)
    buffer = io.BytesIO()
    names = []
    total = 0
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as archive:
        for name, path in _files(root, spec):
            total += path.stat().st_size
            if total > limit * 4:  # clearly too big even compressed: stop reading
                raise PackageTooLargeError(plugin.name, total, limit)
            info = zipfile.ZipInfo(name, date_time=_ZIP_TIME)
            mode = 0o755 if path.stat().st_mode & stat.S_IXUSR else 0o644
            info.external_attr = (stat.S_IFREG | mode) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, path.read_bytes())
            names.append(name)
    data = buffer.getvalue()
    if len(data) > limit:
        raise PackageTooLargeError(plugin.name, len(data), limit)
    return PluginPackage(
        plugin=plugin.name,
        version=plugin.manifest.version,
        data=data,
        sha256=hashlib.sha256(data).hexdigest(),
        files=tuple(names),
    )


def runtime_env(
    plugin: Plugin,
    package: PluginPackage,
    *,
    env_vars: dict[str, str] | None = None,
    py_modules: list[str] | None = None,
) -> dict[str, Any]:
    """The runtime_env every mode runs the plugin in: its package as working_dir, its pip requirements and env."""
    env: dict[str, Any] = {"working_dir": package.uri}
    requirements = plugin.requirements()
    if requirements:
        env["pip"] = requirements
    merged = {**plugin.manifest.runtime_env.env_vars, **(env_vars or {})}
    if merged:
        env["env_vars"] = merged
    if py_modules:
        env["py_modules"] = py_modules
    return env
