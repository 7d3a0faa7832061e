"""``loyalty dev``: the embedded default in the foreground.

PostgreSQL (one database per service) and the tansu broker from PyPI, migrations, then every
service (points on 8001, tiers on 8002, rewards on 8003), with its output streamed here prefixed by
its name. The rewards service runs with a settable clock (``LOYALTY_SETTABLE_CLOCK``, never in
production) so that ``loyalty simulate`` can close a quarter and show its rebate statements.

The services are supervised: one that exits is started again (with back-off), the others keep
running, and its events wait in the broker. Only Ctrl-C or SIGTERM stops the platform: the
services, then the broker, then PostgreSQL. The data directory (databases, API keys) survives
restarts. The broker does not: the tansu build on PyPI stores its log in memory only (its
PostgreSQL and SQLite storage engines are not compiled in), so before stopping, ``dev`` waits
until every event it holds is consumed and every outbox published; a second Ctrl-C stops at once
and says what is lost.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from loyalty_cli.embedded import (
    HOST,
    EmbeddedPostgres,
    TansuBroker,
    consumer_lag,
    ensure_topics,
    port_in_use,
    run_sync,
)
from loyalty_cli.services import DEFAULT_PARTITIONS, SERVICES, ServiceSpec
from loyalty_shared.events import TOPICS

DEFAULT_PG_PORT = 55432
DEFAULT_KAFKA_PORT = 9092
READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 10.0
SUPERVISE_INTERVAL_S = 0.5
# A service that exits is started again after the next of these pauses (seconds); one that ran
# for HEALTHY_AFTER_S before it exited starts again from the first.
RESTART_BACKOFF_S = (1.0, 2.0, 4.0, 8.0, 16.0, 30.0)
HEALTHY_AFTER_S = 60.0
PG_RETRY_S = 5.0
DRAIN_REPORT_S = 5.0
DRAIN_UNKNOWN_S = 30.0
# Services whose clock `PUT /v1/clock` may move forward, for demos: simulate closes the quarter.
SETTABLE_CLOCK = frozenset({"rewards"})
PARTNER_ID = "P-ACME"
KEYS_FILE = "dev-api-keys.json"
# Where a running `loyalty dev` says what it runs (for `loyalty simulate` with no flags).
PLATFORM_FILE = "dev-platform.json"
KEY_SCOPES = ("ecommerce", "crm", "partner")

_print_lock = threading.Lock()


def say(text: str = "") -> None:
    with _print_lock:
        print(text, flush=True)


class DevError(RuntimeError):
    """Start-up failed; the message says why and what to do."""


class Shutdown(Exception):
    """SIGTERM or SIGHUP arrived."""


# --- command line -------------------------------------------------------------------------------


def default_home() -> Path:
    home = os.environ.get("LOYALTY_HOME")
    return Path(home) if home else Path.home() / ".local" / "share" / "loyalty"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "dev",
        help="run everything locally: PostgreSQL, a Kafka-protocol broker and all services",
        description="Run the embedded default in the foreground: PostgreSQL and the tansu broker "
        f"from PyPI, migrations, and every service ({', '.join(s.name for s in SERVICES)}), each "
        "with its own database. Ctrl-C stops it; the data directory is kept.",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="where databases, logs and dev API keys live (default: $LOYALTY_HOME or ~/.local/share/loyalty)",
    )
    parser.add_argument("--pg-port", type=int, default=DEFAULT_PG_PORT, help="default: %(default)s")
    parser.add_argument(
        "--postgres-url",
        help="use this PostgreSQL (postgresql://user:pw@host:port) instead of the embedded one; "
        "only the databases are created there",
    )
    parser.add_argument("--kafka-port", type=int, default=DEFAULT_KAFKA_PORT, help="default: %(default)s")
    parser.add_argument(
        "--kafka-bootstrap",
        help="use this Kafka (host:port) instead of the embedded tansu broker; the idempotent "
        "producer stays on",
    )
    for spec in SERVICES:
        parser.add_argument(
            f"--{spec.name}-port",
            type=int,
            default=spec.port,
            metavar="PORT",
            help=f"HTTP port of the {spec.name} service (default: %(default)s)",
        )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    data_dir: Path = (args.data_dir or default_home()).expanduser().absolute()
    stack = DevStack(
        data_dir=data_dir,
        pg_port=args.pg_port,
        postgres_url=args.postgres_url,
        kafka_port=args.kafka_port,
        kafka_bootstrap=args.kafka_bootstrap,
        ports={spec.name: getattr(args, f"{spec.name}_port") for spec in SERVICES},
    )
    return stack.run()


# --- API keys -----------------------------------------------------------------------------------


def load_api_keys(data_dir: Path) -> dict[str, str]:
    """The dev keys per scope, made once and kept in <data-dir>/dev-api-keys.json (mode 0600)."""
    path = data_dir / KEYS_FILE
    keys: dict[str, str] = {}
    if path.exists():
        try:
            stored = json.loads(path.read_text())
            keys = {scope: str(stored[scope]) for scope in KEY_SCOPES if stored.get(scope)}
        except (OSError, ValueError, AttributeError) as exc:
            raise DevError(f"cannot read {path}: {exc}; delete it to make new keys") from exc
    if all(scope in keys for scope in KEY_SCOPES):
        path.chmod(0o600)
        return keys
    for scope in KEY_SCOPES:
        keys.setdefault(scope, secrets.token_urlsafe(24))
    _write_private(path, json.dumps({**keys, "partner_id": PARTNER_ID}, indent=2) + "\n")
    return keys


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write(text)
    path.chmod(0o600)


@dataclass(frozen=True)
class LocalPlatform:
    """What a running ``loyalty dev`` runs: the broker, the service URLs and the dev API keys."""

    bootstrap: str
    idempotence: bool
    services: dict[str, str]
    keys: dict[str, str]


def write_platform(data_dir: Path, bootstrap: str, idempotence: bool, services: dict[str, str]) -> None:
    body = {"pid": os.getpid(), "bootstrap": bootstrap, "idempotence": idempotence, "services": services}
    _write_private(data_dir / PLATFORM_FILE, json.dumps(body, indent=2) + "\n")


def read_platform(data_dir: Path | None = None) -> LocalPlatform | None:
    """The platform a ``loyalty dev`` on this data directory is running now, or None."""
    data_dir = data_dir or default_home()
    try:
        body = json.loads((data_dir / PLATFORM_FILE).read_text())
        pid = int(body["pid"])
        os.kill(pid, 0)
        stored = json.loads((data_dir / KEYS_FILE).read_text())
        keys = {scope: str(stored[scope]) for scope in KEY_SCOPES}
        services = {str(name): str(url) for name, url in body["services"].items()}
        return LocalPlatform(str(body["bootstrap"]), bool(body["idempotence"]), services, keys)
    except PermissionError:
        return None  # another user's process has that pid: not our platform
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def api_keys_setting(keys: dict[str, str]) -> str:
    """LOYALTY_API_KEYS: comma-separated key:scope[:partner_id]."""
    return ",".join(
        f"{keys[scope]}:{scope}:{PARTNER_ID}" if scope == "partner" else f"{keys[scope]}:{scope}"
        for scope in KEY_SCOPES
    )


# --- databases on a PostgreSQL we do not run ----------------------------------------------------


def external_url(url: str, database: str) -> str:
    from sqlalchemy.engine import make_url

    parsed = make_url(url).set(drivername="postgresql+asyncpg", database=database)
    return parsed.render_as_string(hide_password=False)


async def _create_external_database(url: str, name: str) -> None:
    from sqlalchemy import text
    from sqlalchemy.engine import make_url
    from sqlalchemy.ext.asyncio import create_async_engine

    admin_db = make_url(url).database or "postgres"
    engine = create_async_engine(external_url(url, admin_db), isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            query = text("SELECT 1 FROM pg_database WHERE datname = :name")
            if (await conn.execute(query, {"name": name})).first() is None:
                quoted = engine.dialect.identifier_preparer.quote(name)
                await conn.execute(text(f"CREATE DATABASE {quoted}"))
    finally:
        await engine.dispose()


def create_external_database(url: str, name: str) -> None:
    run_sync(lambda: _create_external_database(url, name))


# --- running services ---------------------------------------------------------------------------


def exit_status(code: int) -> str:
    """How a process ended, in words: "0", "1", "SIGKILL"."""
    if code < 0:
        try:
            return signal.Signals(-code).name
        except ValueError:
            return f"signal {-code}"
    return str(code)


@dataclass
class RunningService:
    """A service process under supervision: spawned again (with back-off) whenever it exits."""

    spec: ServiceSpec
    port: int
    env: dict[str, str]
    proc: subprocess.Popen[str] | None = None
    output: collections.deque[str] = field(default_factory=lambda: collections.deque(maxlen=60))
    started_at: float = 0.0
    restarts: int = 0
    quick_exits: int = 0  # exits in a row, each within HEALTHY_AFTER_S of its start
    restart_at: float | None = None  # set while a restart waits out its back-off
    ready: bool = False

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def spawn(self) -> None:
        command = [sys.executable, "-m", self.spec.package, "serve", "--host", HOST]
        proc = subprocess.Popen(
            [*command, "--port", str(self.port)],
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
            start_new_session=True,  # Ctrl-C reaches us only; we stop the services in order
        )
        self.proc, self.started_at, self.restart_at, self.ready = proc, time.monotonic(), None, False
        threading.Thread(target=self.stream, args=(proc,), name=f"out-{self.spec.name}", daemon=True).start()

    def stream(self, proc: subprocess.Popen[str]) -> None:
        """Copy the process's output to ours, prefixed by the service's name (runs in a thread)."""
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.rstrip("\n")
            self.output.append(line)
            say(f"{self.spec.name:>10} | {line}")

    def stop(self, timeout: float) -> None:
        """SIGTERM (the batch in hand commits), SIGKILL after ``timeout`` seconds."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            say(f"{self.spec.name} did not stop in {timeout:.0f} s; killing it")
            self.proc.kill()
            self.proc.wait()


@dataclass(frozen=True)
class Backlog:
    """What the services have not consumed yet (per service: records behind on its topics) and what
    they have not published yet (outbox rows)."""

    lag: dict[str, int]
    outbox: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.lag.values()) + sum(self.outbox.values())

    def __str__(self) -> str:
        parts = [f"{name} {n} behind" for name, n in self.lag.items() if n]
        parts += [f"{name} {n} to publish" for name, n in self.outbox.items() if n]
        return ", ".join(parts) or "nothing"


async def _outbox_backlog(url: str) -> int:
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine
    from sqlalchemy.pool import NullPool

    engine = create_async_engine(url, poolclass=NullPool)
    try:
        async with engine.connect() as conn:
            query = text("SELECT count(*) FROM outbox WHERE published_at IS NULL")
            return int((await conn.execute(query)).scalar_one())
    finally:
        await engine.dispose()


def _raise_shutdown(signum: int, frame: FrameType | None) -> None:
    raise Shutdown(signal.Signals(signum).name)


class DevStack:
    def __init__(
        self,
        *,
        data_dir: Path,
        pg_port: int,
        postgres_url: str | None,
        kafka_port: int,
        kafka_bootstrap: str | None,
        ports: dict[str, int] | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.ports = {spec.name: spec.port for spec in SERVICES} | (ports or {})
        self.postgres_url = postgres_url
        self.kafka_bootstrap = kafka_bootstrap
        self.pg = None if postgres_url else EmbeddedPostgres(data_dir / "postgres", pg_port)
        log = data_dir / "logs" / "tansu.log"
        self.broker = None if kafka_bootstrap else TansuBroker(kafka_port, log_path=log)
        self.services: list[RunningService] = []
        self.keys: dict[str, str] = {}
        self._pg_retry_at = 0.0

    @property
    def bootstrap(self) -> str:
        if self.broker is not None:
            return self.broker.bootstrap
        assert self.kafka_bootstrap is not None
        return self.kafka_bootstrap

    def database_url(self, database: str) -> str:
        if self.pg is not None:
            return self.pg.url(database)
        assert self.postgres_url is not None
        return external_url(self.postgres_url, database)

    # the whole run

    def run(self) -> int:
        for signum in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, _raise_shutdown)
        code = 0
        try:
            self.start()
            urls = {service.spec.name: service.url for service in self.services}
            write_platform(self.data_dir, self.bootstrap, self.broker is None, urls)
            self.print_banner()
            self.watch()
        except DevError as exc:
            say(f"error: {exc}")
            code = 1
        except (KeyboardInterrupt, Shutdown):
            say("")
            self.drain()
        finally:
            self.shutdown()
        return code

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.keys = load_api_keys(self.data_dir)
        self.start_postgres()
        self.start_broker()
        for spec in SERVICES:
            self.migrate(spec)
        for spec in SERVICES:
            self.start_service(spec)

    # infrastructure

    def start_postgres(self) -> None:
        names = [spec.database for spec in SERVICES]
        try:
            if self.pg is None:
                assert self.postgres_url is not None
                for name in names:
                    create_external_database(self.postgres_url, name)
                say(f"PostgreSQL (external): databases {', '.join(names)} ready")
                return
            say(f"starting PostgreSQL on {HOST}:{self.pg.port} (data in {self.pg.data_dir}) ...")
            self.pg.start()
            for name in names:
                self.pg.create_database(name)
        except Exception as exc:  # any failure here is fatal; say what it was
            where = self._shown_url("postgres") if self.pg is None else "embedded"
            raise DevError(f"PostgreSQL ({where}): {exc or repr(exc)}") from exc
        say(f"PostgreSQL ready: databases {', '.join(names)}")

    def start_broker(self) -> None:
        try:
            if self.broker is not None:
                say(f"starting tansu on {self.broker.bootstrap} ...")
                self.broker.start()
            topics = list(TOPICS)
            run_sync(lambda: ensure_topics(self.bootstrap, topics, DEFAULT_PARTITIONS))
        except Exception as exc:
            hint = "" if self.broker is None else " (another broker running? try --kafka-port)"
            raise DevError(f"Kafka at {self.bootstrap}: {exc or repr(exc)}{hint}") from exc
        pid = f" (tansu pid {self.broker.pid})" if self.broker is not None else ""
        say(f"broker ready on {self.bootstrap}{pid}: topics {', '.join(TOPICS)}")

    # services

    def service_env(self, spec: ServiceSpec) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            LOYALTY_DATABASE_URL=self.database_url(spec.database),
            LOYALTY_KAFKA_BOOTSTRAP_SERVERS=self.bootstrap,
            LOYALTY_API_KEYS=api_keys_setting(self.keys),
            LOYALTY_ENVIRONMENT="development",
            LOYALTY_LOG_JSON="false",
            PYTHONUNBUFFERED="1",
        )
        if self.broker is not None:
            env["LOYALTY_KAFKA_ENABLE_IDEMPOTENCE"] = "false"  # tansu rejects InitProducerId
        if spec.name in SETTABLE_CLOCK:
            env["LOYALTY_SETTABLE_CLOCK"] = "true"  # the development environment only
        return env

    def migrate(self, spec: ServiceSpec) -> None:
        say(f"migrating {spec.name} ...")
        result = subprocess.run(
            [sys.executable, "-m", spec.package, "migrate"],
            env=self.service_env(spec),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            start_new_session=True,
            check=False,
        )
        if result.returncode != 0:
            output = (result.stdout + result.stderr).strip()
            raise DevError(
                f"migrations of {spec.name} failed (python -m {spec.package} migrate exited with "
                f"{result.returncode}):\n{output}"
            )

    def url(self, name: str) -> str:
        return f"http://{HOST}:{self.ports[name]}"

    def start_service(self, spec: ServiceSpec) -> None:
        port = self.ports[spec.name]
        if port_in_use(port):
            raise DevError(f"{spec.name}: port {HOST}:{port} is already in use (try --{spec.name}-port)")
        service = RunningService(spec, port, self.service_env(spec))
        service.spawn()
        say(f"starting {spec.name} on {HOST}:{port} (pid {service.pid}) ...")
        self.services.append(service)
        self.wait_ready(service)

    def wait_ready(self, service: RunningService) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            assert service.proc is not None
            if service.proc.poll() is not None:
                raise DevError(self._failed(service, f"exited with {service.proc.returncode}"))
            if _answers_ready(service):
                service.ready = True
                return
            time.sleep(0.25)
        raise DevError(self._failed(service, f"not ready after {READY_TIMEOUT_S:.0f} s"))

    def _failed(self, service: RunningService, why: str) -> str:
        time.sleep(0.2)  # let the output thread catch the last lines
        output = "\n".join(service.output) or "(no output)"
        return f"{service.spec.name} {why} (GET {service.url}/readyz). Its last output:\n{output}"

    # running

    def print_banner(self) -> None:
        crm = self.keys["crm"]
        auth = f'-H "Authorization: Bearer {crm}"'
        lines = ["", "loyalty dev is running. Ctrl-C stops it.", ""]
        for service in self.services:
            lines.append(f"  {service.spec.name:<10} {service.url}   (API docs: {service.url}/docs)")
        settable = [s.spec.name for s in self.services if s.spec.name in SETTABLE_CLOCK]
        if settable:
            lines.append(
                f"  {'clock':<10} {', '.join(settable)}: settable (PUT /v1/clock, for demos: simulate "
                "closes the quarter with it; never in production)"
            )
        broker = (
            "tansu, in memory: Ctrl-C waits until every event is consumed"
            if self.broker
            else "external Kafka"
        )
        lines.append(f"  {'broker':<10} {self.bootstrap}   ({broker})")
        for spec in SERVICES:
            lines.append(f"  {'database':<10} {self._shown_url(spec.database)}")
        lines.append(f"  {'data':<10} {self.data_dir}")
        lines += ["", f"  API keys (kept in {self.data_dir / KEYS_FILE}):"]
        for scope in KEY_SCOPES:
            partner = f"   (partner {PARTNER_ID})" if scope == "partner" else ""
            lines.append(f"    {scope:<10} {self.keys[scope]}{partner}")
        points, tiers = self.url("points"), self.url("tiers")
        lines += [
            "",
            "  try:",
            f"    curl {auth} {points}/v1/members/M-0001/points",
            f"    curl {auth} {tiers}/v1/members/M-0001/tier",
            f"    curl {auth} {tiers}/v1/tiers        (the ladder)",
        ]
        if "rewards" in self.ports:
            lines.append(f"    curl {auth} {self.url('rewards')}/v1/programs   (the programs)")
        lines += [
            "  feed it orders, in another terminal (with demo rewards programs, a quarter closed):",
            "    ./loyalty simulate",
            "",
        ]
        say("\n".join(lines))

    def _shown_url(self, database: str) -> str:
        from sqlalchemy.engine import make_url

        return make_url(self.database_url(database)).render_as_string(hide_password=True)

    def watch(self) -> None:
        """Supervise until Ctrl-C or SIGTERM: a service that exits is started again, the others
        keep running. Raises DevError only when the platform cannot go on (the broker will not
        start again)."""
        while True:
            self.supervise()
            time.sleep(SUPERVISE_INTERVAL_S)

    def supervise(self) -> None:
        """One round: restart what exited (after its back-off), note what became ready."""
        self._supervise_postgres()
        self._supervise_broker()
        now = time.monotonic()
        for service in self.services:
            assert service.proc is not None
            if service.restart_at is not None:
                if now >= service.restart_at:
                    service.restarts += 1
                    service.spawn()
                    say(f"restarting {service.spec.name} (pid {service.pid}, restart {service.restarts}) ...")
                continue
            code = service.proc.poll()
            if code is None:
                if not service.ready and _answers_ready(service):
                    service.ready = True
                    if service.restarts:
                        say(f"{service.spec.name} is back and ready (pid {service.pid})")
                continue
            ran = now - service.started_at
            service.quick_exits = 1 if ran >= HEALTHY_AFTER_S else service.quick_exits + 1
            delay = RESTART_BACKOFF_S[min(service.quick_exits, len(RESTART_BACKOFF_S)) - 1]
            service.restart_at = now + delay
            say(
                f"{service.spec.name} exited with {exit_status(code)} after {ran:.0f} s; restarting it "
                f"in {delay:g} s (the other services keep running; its events wait in the broker)"
            )

    def _supervise_postgres(self) -> None:
        if self.pg is None or self.pg.is_running() or time.monotonic() < self._pg_retry_at:
            return
        say("PostgreSQL stopped; starting it again (its data is kept) ...")
        try:
            self.pg.start()
        except RuntimeError as exc:
            self._pg_retry_at = time.monotonic() + PG_RETRY_S
            say(f"error: PostgreSQL did not start ({exc}); trying again in {PG_RETRY_S:g} s")
            return
        say("PostgreSQL is back")

    def _supervise_broker(self) -> None:
        if self.broker is None or self.broker.is_running():
            return
        code = self.broker.returncode
        say(
            f"tansu exited with {exit_status(code) if code is not None else '?'}. It keeps events in "
            "memory only: events the services had not consumed yet are LOST, and the topics start "
            "empty. Starting it again, then every service."
        )
        self.broker.stop()
        self.start_broker()
        for service in self.services:
            service.stop(STOP_TIMEOUT_S)
            service.restarts += 1
            service.spawn()
            say(f"restarting {service.spec.name} (pid {service.pid}) ...")

    # stopping

    def backlog(self) -> Backlog:
        groups = {spec.name: (spec.consumer_group, spec.consumes) for spec in SERVICES}
        urls = {spec.name: self.database_url(spec.database) for spec in SERVICES}

        async def measure() -> Backlog:
            lag = await consumer_lag(self.bootstrap, dict(groups.values()))
            outbox = {name: await _outbox_backlog(url) for name, url in urls.items()}
            return Backlog({name: lag[group] for name, (group, _) in groups.items()}, outbox)

        return run_sync(measure)

    def drain(self) -> None:
        """Before stopping on the in-memory broker: wait until every event it holds is consumed and
        every outbox is published, so a restart loses nothing. A second Ctrl-C stops at once."""
        if self.broker is None or not self.broker.is_running() or len(self.services) < len(SERVICES):
            return  # nothing to wait for: an external broker keeps its log, or we never got going
        say(
            "stopping: first the services consume every event the broker holds (tansu keeps "
            "them in memory only, a restart would lose them). Ctrl-C again to stop at once."
        )
        shown, settled, failing_since = 0.0, 0, None
        try:
            while settled < 2:  # twice in a row: nothing arrived between two looks
                self.supervise()
                try:
                    left = self.backlog()
                except Exception as exc:  # the broker or a database is not answering right now
                    failing_since = failing_since or time.monotonic()
                    if time.monotonic() - failing_since > DRAIN_UNKNOWN_S:
                        say(f"cannot tell what is left to consume ({exc!r}); stopping")
                        return
                    time.sleep(1)
                    continue
                failing_since = None
                settled = settled + 1 if left.total == 0 else 0
                if left.total and time.monotonic() - shown >= DRAIN_REPORT_S:
                    say(f"  waiting for the services: {left}")
                    shown = time.monotonic()
                time.sleep(SUPERVISE_INTERVAL_S)
            say("every event is consumed and published")
        except (KeyboardInterrupt, Shutdown):
            say("stopping at once: the events not consumed yet are lost with the broker")

    def shutdown(self) -> None:
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, signal.SIG_IGN)  # a second Ctrl-C must not cut the clean-up
        (self.data_dir / PLATFORM_FILE).unlink(missing_ok=True)
        self.stop_services()
        if self.broker is not None and self.broker.is_running():
            self._report_loss()
            say("stopping tansu ...")
        if self.broker is not None:
            self.broker.stop()
        if self.pg is not None:
            say("stopping PostgreSQL ...")
            try:
                self.pg.stop()
            except RuntimeError as exc:
                say(f"error: {exc}")
        say("stopped.")

    def _report_loss(self) -> None:
        """Say plainly what stopping the in-memory broker now loses, if anything."""
        try:
            lag = self.backlog().lag
        except Exception:
            return
        if sum(lag.values()):
            say(f"not consumed, lost with the broker: {', '.join(f'{k} {v}' for k, v in lag.items() if v)}")

    def stop_services(self) -> None:
        for service in self.services:
            if service.proc is not None and service.proc.poll() is None:
                say(f"stopping {service.spec.name} ...")
                service.proc.terminate()
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for service in self.services:
            service.stop(max(0.0, deadline - time.monotonic()))


def _answers_ready(service: RunningService) -> bool:
    import httpx

    try:
        return httpx.get(f"{service.url}/readyz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False
