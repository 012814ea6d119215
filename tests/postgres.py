"""A real PostgreSQL server for the test session: Debian's binaries (``/usr/lib/postgresql/<major>/bin``), a
cluster made by ``initdb`` in a temp dir, on a free port, stopped at the end; each test gets a database of its own.

PostgreSQL refuses to run as root, and CI runs as root: then ``initdb`` and ``postgres`` run as the package's
``postgres`` user, in a folder that user owns. The superuser has a password (``scram-sha-256``), so the URLs the
tests use carry one, as an operator's would. Without the binaries the tests that need them skip, saying how to
install them.
"""

from __future__ import annotations

import glob
import os
import secrets
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ray_runtime._net import free_port

INSTALL_HINT = "PostgreSQL is not installed; install it with: sudo apt-get install -y postgresql"


def binaries() -> Path | None:
    """The folder of Debian's PostgreSQL binaries (the newest major), or where ``initdb`` is on PATH."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("initdb")
    return Path(on_path).parent if on_path else None


@dataclass
class PostgresServer:
    """A running PostgreSQL cluster of this test session."""

    bin: Path
    data: Path
    port: int
    user: str
    password: str
    as_user: list[str]

    def url(self, database: str = "postgres", **options: str) -> str:
        query = "&".join(f"{key}={value}" for key, value in options.items())
        return f"postgresql://{self.user}:{self.password}@127.0.0.1:{self.port}/{database}" + (
            f"?{query}" if query else ""
        )

    def ctl(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        """``pg_ctl`` on this cluster (``start``, ``stop -m immediate``, ``restart``...)."""
        command = [*self.as_user, str(self.bin / "pg_ctl"), "-D", str(self.data), "-w", *args]
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=True)

    def start(self) -> None:
        options = f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1 -c fsync=on"
        self.ctl("-o", options, "-l", str(self.data / "server.log"), "start")

    def new_database(self) -> str:
        """A fresh database; its URL."""
        import psycopg

        name = f"test_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url(), autocommit=True) as connection:
            connection.execute(f"CREATE DATABASE {name}")
        return self.url(name)


def start_server(root: Path) -> PostgresServer:
    bin_dir = binaries()
    if bin_dir is None:
        pytest.skip(INSTALL_HINT)
    as_user: list[str] = []
    if os.geteuid() == 0:  # PostgreSQL refuses root: run it as the package's own user
        as_user = ["runuser", "-u", "postgres", "--"]
        shutil.chown(root, "postgres")
    password = secrets.token_hex(12)
    secret = root / "password"
    secret.write_text(password)
    if as_user:
        shutil.chown(secret, "postgres")
    data = root / "data"
    initdb = [str(bin_dir / "initdb"), "-D", str(data), "-U", "rr", f"--pwfile={secret}", "--auth=scram-sha-256"]
    subprocess.run(
        [*as_user, *initdb, "-E", "UTF8", "--no-sync"],
        capture_output=True,
        text=True,
        timeout=180,
        check=True,
    )
    server = PostgresServer(bin_dir, data, free_port(), "rr", password, as_user)
    server.start()
    return server


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A PostgreSQL server for the whole test session (skips, with the install command, when there is none)."""
    root = Path(tempfile.mkdtemp(prefix="rrpg-", dir="/tmp"))
    server = None
    try:
        server = start_server(root)
        yield server
    finally:
        if server is not None:
            subprocess.run(
                [*server.as_user, str(server.bin / "pg_ctl"), "-D", str(server.data), "-m", "fast", "stop"],
                capture_output=True,
                timeout=60,
            )
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_server) -> str:
    """A database of this test alone, on the session's server."""
    return postgres_server.new_database()
