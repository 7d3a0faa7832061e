"""``loyalty dev``: the embedded default in the foreground.

PostgreSQL (one database per service) and the tansu broker from PyPI, migrations, then every
service (points on 8001, tiers on 8002), with its output streamed here prefixed by its name. Ctrl-C
or SIGTERM stops the services, then the broker, then PostgreSQL. The data directory (databases, API
keys) survives restarts; the broker is memory only.
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
PARTNER_ID = "P-ACME"
KEYS_FILE = "dev-api-keys.json"
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


@dataclass
class RunningService:
    spec: ServiceSpec
    port: int
    proc: subprocess.Popen[str]
    output: collections.deque[str] = field(default_factory=lambda: collections.deque(maxlen=60))

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def stream(self) -> None:
        """Copy the service's output to ours, prefixed by its name (runs in a thread)."""
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            line = line.rstrip("\n")
            self.output.append(line)
            say(f"{self.spec.name:>10} | {line}")


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
            self.print_banner()
            code = self.watch()
        except DevError as exc:
            say(f"error: {exc}")
            code = 1
        except (KeyboardInterrupt, Shutdown):
            say("")
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
        say(f"broker ready on {self.bootstrap}: topics {', '.join(TOPICS)}")

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
        say(f"starting {spec.name} on {HOST}:{port} ...")
        command = [sys.executable, "-m", spec.package, "serve", "--host", HOST]
        proc = subprocess.Popen(
            [*command, "--port", str(port)],
            env=self.service_env(spec),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
            start_new_session=True,  # Ctrl-C reaches us only; we stop the services in order
        )
        service = RunningService(spec, port, proc)
        self.services.append(service)
        threading.Thread(target=service.stream, name=f"out-{spec.name}", daemon=True).start()
        self.wait_ready(service)

    def wait_ready(self, service: RunningService) -> None:
        import httpx

        deadline = time.monotonic() + READY_TIMEOUT_S
        with httpx.Client(timeout=2) as client:
            while time.monotonic() < deadline:
                if service.proc.poll() is not None:
                    raise DevError(self._failed(service, f"exited with {service.proc.returncode}"))
                try:
                    if client.get(f"{service.url}/readyz").status_code == 200:
                        return
                except httpx.TransportError:
                    pass
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
        broker = "tansu, in memory: empty after a restart" if self.broker else "external Kafka"
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
            "  feed it orders, in another terminal:",
            f"    ./loyalty simulate --bootstrap {self.bootstrap} --api {points} --tiers-api {tiers} "
            f"--api-key {crm}",
            "",
        ]
        say("\n".join(lines))

    def _shown_url(self, database: str) -> str:
        from sqlalchemy.engine import make_url

        return make_url(self.database_url(database)).render_as_string(hide_password=True)

    def watch(self) -> int:
        """Wait for Ctrl-C or SIGTERM (exit 0) or for a process to die (exit 1)."""
        while True:
            for service in self.services:
                code = service.proc.poll()
                if code is not None:
                    say(f"{service.spec.name} exited with {code}; shutting everything down")
                    return 1
            if self.broker is not None and not self.broker.is_running():
                say("tansu exited; shutting everything down")
                return 1
            time.sleep(0.5)

    # stopping

    def shutdown(self) -> None:
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, signal.SIG_IGN)  # a second Ctrl-C must not cut the clean-up
        self.stop_services()
        if self.broker is not None and self.broker.is_running():
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

    def stop_services(self) -> None:
        running = [s for s in self.services if s.proc.poll() is None]
        for service in running:
            say(f"stopping {service.spec.name} ...")
            service.proc.terminate()
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for service in running:
            try:
                service.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                say(f"{service.spec.name} did not stop in {STOP_TIMEOUT_S:.0f} s; killing it")
                service.proc.kill()
                service.proc.wait()
