"""Real PostgreSQL and MariaDB servers for the SQL probes' tests, from the Debian packages.

Each server runs in its own process on a free loopback port, in a temporary directory owned by an
unprivileged system user (CI runs as root, and PostgreSQL refuses to), with password authentication
and a throwaway CA's certificate for ``localhost``. A context manager yields once the server logs
that it accepts connections and stops it (terminate, bounded wait, kill) on exit. The directories
are made with ``mkdtemp`` in ``/tmp``: pytest's own are private to root, so the server could not
enter them.

Also here: a fake MySQL server that greets every connection with bytes of the test's choosing, and
the real greeting of a server with its TLS capability taken out.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import shutil
import socket
import struct
import subprocess
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final
from urllib.parse import urlencode

import pytest
import trustme

from tests.conftest import free_port
from tests.polling import wait_until

SERVER_USER: Final = "uptime-test"
"""The system user the servers run as when the tests run as root."""
PASSWORD: Final = "s3cret-Sql-pw"  # noqa: S105 - the throwaway servers' test password
"""Every test account's password: distinctive, so "not in the detail" means something."""
START_SECONDS: Final = 30.0
STOP_SECONDS: Final = 10.0
PG_SUPERUSER: Final = "postgres"
MYSQL_USER: Final = "probe"
LIMITED_USER: Final = "limited"
"""An account that may log in but not use the ``probe`` database."""
DATABASE: Final = "probe"
MYSQL_CLIENT_SSL: Final = 0x800


def postgres_bindir() -> Path | None:
    """The newest installed PostgreSQL's ``bin`` directory (Debian's ``postgresql`` package)."""
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/postgres"),
        key=lambda path: int(path.parts[-3]) if path.parts[-3].isdigit() else 0,
    )
    return found[-1].parent if found else None


def mariadb_binaries() -> tuple[str, str, str] | None:
    """``mariadbd``, ``mariadb-install-db`` and the ``mariadb`` client (``mariadb-server``)."""
    server = shutil.which("mariadbd") or shutil.which("mariadbd", path="/usr/sbin")
    install = shutil.which("mariadb-install-db") or shutil.which("mysql_install_db")
    client = shutil.which("mariadb") or shutil.which("mysql")
    return (server, install, client) if server and install and client else None


def _as_server_user() -> list[str]:
    """The prefix that runs a command as ``SERVER_USER`` when we are root, creating the user.

    ``setpriv`` execs, so the process we start is the server itself: terminating it stops the server.
    """
    if os.geteuid() != 0:
        return []
    with contextlib.suppress(KeyError):
        pwd.getpwnam(SERVER_USER)
        return ["setpriv", f"--reuid={SERVER_USER}", f"--regid={SERVER_USER}", "--clear-groups"]
    subprocess.run(  # idempotent enough: a concurrent run that created it first is fine
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", SERVER_USER],
        check=False,
        capture_output=True,
    )
    pwd.getpwnam(SERVER_USER)  # raises if it still does not exist
    return ["setpriv", f"--reuid={SERVER_USER}", f"--regid={SERVER_USER}", "--clear-groups"]


def _give(*paths: Path) -> None:
    """Hand ``paths`` to the server user (when we are root)."""
    if os.geteuid() == 0:
        for path in paths:
            shutil.chown(path, user=SERVER_USER, group=SERVER_USER)


@contextlib.contextmanager
def server_directory(prefix: str) -> Iterator[Path]:
    """A fresh directory the server user owns, removed afterwards."""
    _as_server_user()  # creates the user if needed
    directory = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        _give(directory)
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@dataclass(frozen=True)
class TlsFiles:
    """A server certificate for ``localhost`` only (not ``127.0.0.1``) and its CA, as files."""

    ca_file: Path
    cert_file: Path
    key_file: Path


def write_tls(directory: Path) -> TlsFiles:
    """A throwaway CA and a ``localhost`` certificate, readable by the server user only."""
    ca = trustme.CA()
    leaf = ca.issue_cert("localhost")
    files = TlsFiles(directory / "ca.pem", directory / "server.crt", directory / "server.key")
    ca.cert_pem.write_to_path(str(files.ca_file))
    leaf.cert_chain_pems[0].write_to_path(str(files.cert_file))
    leaf.private_key_pem.write_to_path(str(files.key_file))
    files.key_file.chmod(0o600)
    _give(files.cert_file, files.key_file)
    return files


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
    try:
        proc.wait(timeout=STOP_SECONDS)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=STOP_SECONDS)


def _run(command: list[str], *, env: dict[str, str] | None = None) -> str:
    """Run a set-up command to completion; fail the test with its output if it fails."""
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=START_SECONDS,
        check=False,
        env={**os.environ, **(env or {})},
    )
    if done.returncode != 0:
        pytest.fail(f"{command[0]} exited with {done.returncode}:\n{done.stdout}\n{done.stderr}")
    return done.stdout


@contextlib.contextmanager
def _started(command: list[str], log: Path, marker: str) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``command`` (output to ``log``) until ``marker`` appears in the log; stop it on exit."""
    with log.open("wb") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_until(
            lambda: proc.poll() is not None or marker in log.read_text(errors="replace"),
            within=START_SECONDS,
            what=f"{Path(command[-1]).name}: {marker!r}",
        )
        if proc.poll() is not None:
            pytest.fail(f"{command} exited with {proc.returncode}:\n{log.read_text()}")
        yield proc
    finally:
        _stop(proc)


# -- PostgreSQL ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class PgServer:
    """A running PostgreSQL server."""

    port: int
    directory: Path
    bindir: Path
    proc: subprocess.Popen[bytes] = field(repr=False)

    def url(
        self,
        user: str = PG_SUPERUSER,
        password: str = PASSWORD,
        database: str = DATABASE,
        host: str = "127.0.0.1",
        **query: str,
    ) -> str:
        """A ``postgresql://`` URL for this server."""
        tail = f"?{urlencode(query)}" if query else ""
        return f"postgresql://{user}:{password}@{host}:{self.port}/{database}{tail}"

    def sql(self, statement: str, database: str = "postgres") -> str:
        """Run ``statement`` with ``psql`` as the superuser; its unaligned output."""
        return _run(
            [
                str(self.bindir / "psql"),
                "--no-psqlrc",
                "--tuples-only",
                "--no-align",
                "--set=ON_ERROR_STOP=1",
                "--host=127.0.0.1",
                f"--port={self.port}",
                f"--username={PG_SUPERUSER}",
                f"--dbname={database}",
                f"--command={statement}",
            ],
            env={"PGPASSWORD": PASSWORD, "PGCONNECT_TIMEOUT": "10"},
        ).strip()


def _postgres_command(bindir: Path, data: Path, port: int, socket_dir: Path) -> list[str]:
    return [
        *_as_server_user(),
        str(bindir / "postgres"),
        "-D",
        str(data),
        "-p",
        str(port),
        "-k",
        str(socket_dir),
        "-c",
        "listen_addresses=127.0.0.1",
        "-c",
        "fsync=off",  # a throwaway cluster: durability buys nothing
        "-c",
        "full_page_writes=off",
        "-c",
        "max_connections=40",
        "-c",
        "client_connection_check_interval=100ms",  # a query's backend ends soon after its client
    ]


@contextlib.contextmanager
def postgres_primary(bindir: Path, tls: TlsFiles) -> Iterator[PgServer]:
    """``initdb`` with SCRAM passwords, then ``postgres`` with TLS available (not required).

    Creates the ``probe`` database, which the ``limited`` role may not connect to.
    """
    with server_directory("uptime-pg-") as directory:
        password_file = directory / "password"
        password_file.write_text(PASSWORD + "\n")
        _give(password_file)
        data = directory / "data"
        _run(
            [
                *_as_server_user(),
                str(bindir / "initdb"),
                f"--pgdata={data}",
                f"--username={PG_SUPERUSER}",
                f"--pwfile={password_file}",
                "--auth=scram-sha-256",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            ]
        )
        port = free_port()
        command = [
            *_postgres_command(bindir, data, port, directory),
            "-c",
            "ssl=on",
            "-c",
            f"ssl_cert_file={tls.cert_file}",
            "-c",
            f"ssl_key_file={tls.key_file}",
        ]
        marker = "database system is ready to accept connections"
        with _started(command, directory / "postgres.log", marker) as proc:
            server = PgServer(port=port, directory=directory, bindir=bindir, proc=proc)
            server.sql(f"CREATE DATABASE {DATABASE}")
            server.sql(f"REVOKE CONNECT ON DATABASE {DATABASE} FROM PUBLIC")
            server.sql(f"CREATE ROLE {LIMITED_USER} LOGIN PASSWORD '{PASSWORD}'")
            yield server


@contextlib.contextmanager
def postgres_replica(primary: PgServer) -> Iterator[PgServer]:
    """A streaming replica of ``primary`` (``pg_basebackup -R``), without TLS.

    It has replayed a transaction made after it started, so ``pg_last_xact_replay_timestamp()`` is set.
    """
    with server_directory("uptime-pg-replica-") as directory:
        data = directory / "data"
        _run(
            [
                *_as_server_user(),
                str(primary.bindir / "pg_basebackup"),
                "--host=127.0.0.1",
                f"--port={primary.port}",
                f"--username={PG_SUPERUSER}",
                f"--pgdata={data}",
                "--write-recovery-conf",
                "--wal-method=stream",
                "--checkpoint=fast",
                "--no-sync",
            ],
            env={"PGPASSWORD": PASSWORD},
        )
        port = free_port()
        command = _postgres_command(primary.bindir, data, port, directory)
        marker = "database system is ready to accept read-only connections"
        with _started(command, directory / "postgres.log", marker) as proc:
            replica = PgServer(port=port, directory=directory, bindir=primary.bindir, proc=proc)
            primary.sql("CREATE TABLE IF NOT EXISTS replicated (id int)", database=DATABASE)
            primary.sql("INSERT INTO replicated VALUES (1)", database=DATABASE)
            # The table may not be replayed yet either: ask for it before counting its rows.
            wait_until(
                lambda: (
                    replica.sql(
                        "SELECT to_regclass('public.replicated') IS NOT NULL", database=DATABASE
                    )
                    == "t"
                    and replica.sql("SELECT count(*) FROM replicated", database=DATABASE) != "0"
                ),
                within=START_SECONDS,
                what="the replica replays the primary's table and insert",
            )
            yield replica


# -- MariaDB -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MariaDbServer:
    """A running MariaDB server."""

    port: int
    socket_path: Path
    client: str
    proc: subprocess.Popen[bytes] = field(repr=False)

    def url(
        self,
        user: str = MYSQL_USER,
        password: str = PASSWORD,
        database: str = DATABASE,
        host: str = "127.0.0.1",
        **query: str,
    ) -> str:
        """A ``mysql://`` URL for this server."""
        tail = f"?{urlencode(query)}" if query else ""
        return f"mysql://{user}:{password}@{host}:{self.port}/{database}{tail}"

    def sql(self, statement: str) -> str:
        """Run ``statement`` as root over the Unix socket; the client's batch output."""
        return _run(
            [
                self.client,
                "--no-defaults",
                f"--socket={self.socket_path}",
                "--user=root",
                "--batch",
                "--skip-column-names",
                f"--execute={statement}",
            ]
        ).strip()


@contextlib.contextmanager
def mariadb(binaries: tuple[str, str, str], tls: TlsFiles) -> Iterator[MariaDbServer]:
    """``mariadb-install-db``, then ``mariadbd`` with TLS available (not required).

    Creates the ``probe`` database, the ``probe`` user (all privileges) and the ``limited`` user
    (none), both with ``PASSWORD``.
    """
    server, install, client = binaries
    with server_directory("uptime-mariadb-") as directory:
        data = directory / "data"
        as_root = os.geteuid() == 0
        _run(
            [
                install,
                "--no-defaults",
                f"--datadir={data}",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
                *([f"--user={SERVER_USER}"] if as_root else []),
            ]
        )
        port = free_port()
        socket_path = directory / "mariadb.sock"
        command = [
            *_as_server_user(),
            server,
            "--no-defaults",
            f"--datadir={data}",
            f"--socket={socket_path}",
            f"--pid-file={directory / 'mariadb.pid'}",
            f"--port={port}",
            "--bind-address=127.0.0.1",
            "--skip-networking=0",
            f"--ssl-cert={tls.cert_file}",
            f"--ssl-key={tls.key_file}",
            "--innodb-buffer-pool-size=16M",
            "--skip-name-resolve",
        ]
        with _started(command, directory / "mariadbd.log", "ready for connections") as proc:
            running = MariaDbServer(port=port, socket_path=socket_path, client=client, proc=proc)
            running.sql(
                f"CREATE DATABASE {DATABASE};"
                f"CREATE USER '{MYSQL_USER}'@'%' IDENTIFIED BY '{PASSWORD}';"
                f"GRANT ALL PRIVILEGES ON *.* TO '{MYSQL_USER}'@'%';"
                f"CREATE USER '{LIMITED_USER}'@'%' IDENTIFIED BY '{PASSWORD}';"
            )
            yield running


def mysql_greeting(port: int) -> bytes:
    """The first packet (the handshake) a MySQL server sends on a new connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=START_SECONDS) as connection:
        header = _read_exactly(connection, 4)
        length = int.from_bytes(header[:3], "little")
        return header + _read_exactly(connection, length)


def _read_exactly(connection: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = connection.recv(size - len(data))
        if not chunk:
            raise ConnectionError("the server closed the connection mid-greeting")
        data += chunk
    return data


def without_tls(greeting: bytes) -> bytes:
    """``greeting`` with the CLIENT_SSL capability cleared: a server that does not offer TLS."""
    version_end = greeting.index(b"\0", 5)  # header (4), protocol version (1), version string
    offset = version_end + 1 + 4 + 8 + 1  # thread id, first 8 bytes of the salt, filler
    (capabilities,) = struct.unpack_from("<H", greeting, offset)
    assert capabilities & MYSQL_CLIENT_SSL, "the real server should offer TLS"
    return (
        greeting[:offset]
        + struct.pack("<H", capabilities & ~MYSQL_CLIENT_SSL)
        + greeting[offset + 2 :]
    )


@dataclass
class Greeter:
    """A fake MySQL server: sends ``greeting`` to each connection, keeps what the client sends."""

    port: int
    received: bytearray = field(default_factory=bytearray)
    connections: int = 0
    finished: int = 0
    """Connections the client has closed (everything it sent is in ``received``)."""


@contextlib.asynccontextmanager
async def greeter(greeting: bytes) -> AsyncIterator[Greeter]:
    """Run a ``Greeter`` on the current loop on a free loopback port."""
    fake = Greeter(port=0)

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        fake.connections += 1
        writer.write(greeting)
        with contextlib.suppress(ConnectionError):
            await writer.drain()
            while chunk := await reader.read(65536):
                fake.received += chunk
        fake.finished += 1
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    fake.port = int(server.sockets[0].getsockname()[1])
    try:
        yield fake
    finally:
        server.close()
        await server.wait_closed()


def mysql_packet(payload: bytes, sequence: int = 0) -> bytes:
    """One MySQL packet: 3-byte little-endian length, sequence number, payload."""
    return len(payload).to_bytes(3, "little") + bytes([sequence]) + payload
