"""Missing server settings -> a clear error (exit 2) before anything is captured or copied.

Private PostgreSQL and MariaDB servers without logical decoding / binary log, on free ports, stopped
after the test (the shared servers are configured correctly and must stay so)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = [pytest.mark.timeout(120)]
PG_BIN = Path("/usr/lib/postgresql/15/bin")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _as_postgres(argv: list[str]) -> list[str]:
    # PostgreSQL refuses to run as root.
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


def _wait_port(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"server on port {port} did not start")


@pytest.fixture
def pg_without_logical() -> Iterator[str]:
    # Not under pytest's tmp_path: the postgres user must be able to reach the data directory.
    data = Path(tempfile.mkdtemp(prefix="sw_datamove_pg_"))
    if os.geteuid() == 0:
        shutil.chown(data, "postgres")
    subprocess.run(_as_postgres([str(PG_BIN / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"]),
                   check=True, capture_output=True)
    port = _free_port()
    opts = f"-c wal_level=replica -c port={port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={data}"
    subprocess.run(_as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(data), "-o", opts, "-w", "-l",
                                 str(data / "log"), "start"]), check=True, capture_output=True)
    try:
        _wait_port(port)
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(_as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]),
                       capture_output=True)
        shutil.rmtree(data, ignore_errors=True)


@pytest.fixture
def mariadb_without_binlog(tmp_path: Path) -> Iterator[str]:
    data = tmp_path / "my"
    subprocess.run(["mariadb-install-db", "--no-defaults", f"--datadir={data}", "--user=root", "--auth-root-authentication-method=normal",
                    "--skip-test-db"], check=True, capture_output=True)
    port = _free_port()
    proc = subprocess.Popen(["/usr/sbin/mariadbd", "--no-defaults", f"--datadir={data}", f"--port={port}",
                             "--bind-address=127.0.0.1", f"--socket={data}/sock", "--user=root", "--skip-log-bin",
                             "--skip-grant-tables", "--innodb-buffer-pool-size=16M"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_port(port)
        yield f"mysql://root@127.0.0.1:{port}/mysql"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _cdc(src: str, dst: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "switchover", "data", "cdc", src, dst, "--table", "t",
                           "--prepare-only"], capture_output=True, text=True, timeout=60)


@pytest.mark.postgres
def test_datamove_postgres_without_wal_level_logical_is_refused(pg_without_logical: str, tmp_path: Path) -> None:
    admin = subprocess.run(["psql", pg_without_logical, "-qc", "CREATE TABLE t (id int PRIMARY KEY)"],
                           capture_output=True, text=True)
    assert admin.returncode == 0, admin.stderr
    dst = tmp_path / "dst.db"
    subprocess.run(["python3", "-c", f"import sqlite3; sqlite3.connect('{dst}').execute('CREATE TABLE t (id int PRIMARY KEY)')"],
                   check=True)
    done = _cdc(pg_without_logical, f"sqlite:///{dst}")
    assert done.returncode == 2
    assert "wal_level is 'replica'" in done.stderr and "ALTER SYSTEM SET wal_level = logical" in done.stderr
    assert "Traceback" not in done.stderr
    slots = subprocess.run(["psql", pg_without_logical, "-Atc", "SELECT count(*) FROM pg_replication_slots"],
                           capture_output=True, text=True)
    assert slots.stdout.strip() == "0"


@pytest.mark.mariadb
@pytest.mark.slow
def test_datamove_mariadb_without_binlog_is_refused(mariadb_without_binlog: str, tmp_path: Path) -> None:
    create = subprocess.run([sys.executable, "-c", (
        "from switchover.data.move_tables import Side; "
        f"Side.open('{mariadb_without_binlog}', autocommit=True).execute('CREATE TABLE t (id int PRIMARY KEY)')")],
        capture_output=True, text=True)
    assert create.returncode == 0, create.stderr
    dst = tmp_path / "dst.db"
    subprocess.run(["python3", "-c", f"import sqlite3; sqlite3.connect('{dst}').execute('CREATE TABLE t (id int PRIMARY KEY)')"],
                   check=True)
    done = _cdc(mariadb_without_binlog, f"sqlite:///{dst}")
    assert done.returncode == 2
    assert "the binary log is off (log_bin)" in done.stderr and "binlog_format = ROW" in done.stderr
    assert "Traceback" not in done.stderr
