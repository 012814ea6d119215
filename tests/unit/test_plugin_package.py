"""Packing plugins: deterministic bytes, ignore rules, no escapes, a size limit."""

from __future__ import annotations

import os
import zipfile
from io import BytesIO

import pytest

from ray_runtime.errors import PackageError, PackageTooLargeError
from ray_runtime.plugins.manifest import load
from ray_runtime.plugins.package import build_package, runtime_env

MANIFEST = """name: demo
requirements: [pyjokes==0.6.0]
runtime_env:
  env_vars: {MODE: test}
  excludes: ["*.ckpt", "scratch/"]
actions:
  go: {entrypoint: "demo:go"}
"""


@pytest.fixture
def plugin_dir(tmp_path):
    root = tmp_path / "demo"
    (root / "pkg" / "__pycache__").mkdir(parents=True)
    (root / "scratch").mkdir()
    (root / "logs").mkdir()
    (root / "plugin.yaml").write_text(MANIFEST)
    (root / "demo.py").write_text("def go(): return 1\n")
    (root / "pkg" / "util.py").write_text("X = 1\n")
    (root / "pkg" / "__pycache__" / "util.cpython-311.pyc").write_bytes(b"\0")
    (root / "model.ckpt").write_bytes(b"weights")
    (root / "scratch" / "notes.txt").write_text("scratch")
    (root / "logs" / "run.log").write_text("log")
    (root / "logs" / "keep.log").write_text("keep")
    (root / ".gitignore").write_text("*.log\n!keep.log\n")
    (root / "pkg" / ".gitignore").write_text("generated.py\n")
    (root / "pkg" / "generated.py").write_text("# generated\n")
    return root


def names(package) -> set[str]:
    return set(zipfile.ZipFile(BytesIO(package.data)).namelist())


def test_the_package_honours_gitignore_manifest_excludes_and_usual_clutter(plugin_dir):
    package = build_package(load(plugin_dir))
    assert names(package) == {"plugin.yaml", "demo.py", "pkg/util.py", "pkg/.gitignore", ".gitignore", "logs/keep.log"}
    assert package.files == tuple(sorted(package.files)) or set(package.files) == names(package)


def test_the_same_files_make_the_same_bytes_and_uri(plugin_dir):
    first = build_package(load(plugin_dir))
    os.utime(plugin_dir / "demo.py", (1, 1))  # timestamps do not matter, content does
    assert build_package(load(plugin_dir)).uri == first.uri
    (plugin_dir / "demo.py").write_text("def go(): return 2\n")
    changed = build_package(load(plugin_dir))
    assert changed.uri != first.uri and changed.uri.startswith("gcs://_ray_pkg_") and changed.uri.endswith(".zip")


def test_a_symlink_out_of_the_folder_is_refused(plugin_dir, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("do not ship")
    (plugin_dir / "leak.txt").symlink_to(secret)
    with pytest.raises(PackageError, match=r"leak\.txt is a symlink .* outside the plugin folder"):
        build_package(load(plugin_dir))


def test_a_symlinked_folder_out_of_the_plugin_is_refused(plugin_dir, tmp_path):
    (tmp_path / "elsewhere").mkdir()
    (plugin_dir / "data").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(PackageError, match="data is a symlink"):
        build_package(load(plugin_dir))


def test_a_symlink_inside_the_folder_is_packed_with_its_content(plugin_dir):
    (plugin_dir / "alias.py").symlink_to(plugin_dir / "demo.py")
    archive = zipfile.ZipFile(BytesIO(build_package(load(plugin_dir)).data))
    assert archive.read("alias.py") == (plugin_dir / "demo.py").read_bytes()


def test_a_package_over_the_limit_is_refused_with_what_to_do(plugin_dir):
    (plugin_dir / "blob.bin").write_bytes(os.urandom(8192))
    with pytest.raises(PackageTooLargeError, match=r"over the 0 MiB limit.*\.gitignore") as info:
        build_package(load(plugin_dir), limit=4096)
    assert info.value.http_status == 413 and info.value.details["plugin"] == "demo"


def test_the_runtime_env_carries_package_requirements_and_env_vars(plugin_dir):
    plugin = load(plugin_dir)
    package = build_package(plugin)
    env = runtime_env(plugin, package, env_vars={"EXTRA": "1"})
    assert env == {"working_dir": package.uri, "pip": ["pyjokes==0.6.0"], "env_vars": {"MODE": "test", "EXTRA": "1"}}
