"""Settings from the environment (``LOYALTY_*``), validated at start-up.

Every service reads the same names; a service adds its own fields by subclassing ``ServiceSettings``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class KafkaSettings(BaseSettings):
    """How to reach the Kafka-protocol broker and how the producer behaves."""

    model_config = SettingsConfigDict(env_prefix="LOYALTY_KAFKA_", extra="ignore")

    bootstrap_servers: str = "127.0.0.1:9092"
    # acks=all: a publish counts only when every in-sync replica has it.
    acks: Literal["all", "1", "0"] = "all"
    # The idempotent producer is right for Apache Kafka; tansu rejects InitProducerId, so the
    # embedded default turns it off.
    enable_idempotence: bool = True
    client_id: str = "loyalty"
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None

    def producer_kwargs(self) -> dict[str, object]:
        acks: int | str = "all" if self.acks == "all" else int(self.acks)
        return {
            **self.connection_kwargs(),
            "acks": acks,
            "enable_idempotence": self.enable_idempotence,
            "linger_ms": 2,
        }

    def connection_kwargs(self) -> dict[str, object]:
        kwargs: dict[str, object] = {
            "bootstrap_servers": self.bootstrap_servers,
            "client_id": self.client_id,
            "security_protocol": self.security_protocol,
        }
        if self.sasl_mechanism:
            kwargs["sasl_mechanism"] = self.sasl_mechanism
            kwargs["sasl_plain_username"] = self.sasl_username
            kwargs["sasl_plain_password"] = (
                self.sasl_password.get_secret_value() if self.sasl_password else None
            )
        return kwargs


class ConsumerSettings(BaseSettings):
    """How the shared consumer runner batches, retries and dead-letters."""

    model_config = SettingsConfigDict(env_prefix="LOYALTY_CONSUMER_", extra="ignore")

    batch_max_records: int = Field(default=500, ge=1, le=10_000)
    poll_timeout_ms: int = Field(default=200, ge=1)
    # How long the broker may hold a fetch waiting for data: the floor of end-to-end latency.
    fetch_max_wait_ms: int = Field(default=50, ge=0)
    max_attempts: int = Field(default=3, ge=1, le=20)
    retry_backoff_ms: int = Field(default=100, ge=0)
    # Group membership: a member silent for session_timeout_ms is dropped and its partitions move.
    # (tansu holds a new member's join for half the session timeout: tests use a short one.)
    session_timeout_ms: int = Field(default=10_000, ge=500)
    heartbeat_interval_ms: int = Field(default=3_000, ge=100)
    # Back-off after an infrastructure failure (database or broker down) before the batch is retried.
    failure_backoff_ms: int = Field(default=1000, ge=0)


class DatabaseSettings(BaseSettings):
    """Just the database: what a migration needs (``LOYALTY_DATABASE_URL``)."""

    model_config = SettingsConfigDict(env_prefix="LOYALTY_", extra="ignore")

    database_url: str = Field(
        description="SQLAlchemy async URL, e.g. postgresql+asyncpg://user:pw@host:5432/points"
    )

    @field_validator("database_url")
    @classmethod
    def _async_driver(cls, v: str) -> str:
        if v.startswith("postgresql://") or v.startswith("postgres://"):
            v = "postgresql+asyncpg://" + v.split("://", 1)[1]
        if not v.startswith("postgresql+asyncpg://"):
            raise ValueError("database_url must be a PostgreSQL URL (postgresql+asyncpg://...)")
        return v


class ServiceSettings(DatabaseSettings):
    """What every service needs. Environment names are ``LOYALTY_<FIELD>``."""

    environment: Literal["development", "test", "production"] = "development"
    api_keys: SecretStr = Field(
        default=SecretStr(""),
        description="comma-separated key:scope[:partner_id]; scopes: ecommerce, crm, partner",
    )
    topic_prefix: str = Field(
        default="",
        pattern=r"^[A-Za-z0-9._-]*$",
        description="prepended to every topic and consumer group (environments sharing one cluster)",
    )
    log_level: str = "INFO"
    log_json: bool = True
    run_consumer: bool = True
    run_relay: bool = True
    relay_poll_ms: int = Field(default=100, ge=5)
    relay_batch_size: int = Field(default=500, ge=1)
    db_pool_size: int = Field(default=10, ge=1)
    db_read_pool_size: int = Field(default=4, ge=1, description="connections of the fast read path")
    settable_clock: bool = Field(
        default=False,
        description="mount PUT /v1/clock so tests and demos can move time forward (never in production)",
    )

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    consumer: ConsumerSettings = Field(default_factory=ConsumerSettings)

    @model_validator(mode="after")
    def _no_open_production(self) -> ServiceSettings:
        if self.environment == "production" and not self.api_keys.get_secret_value().strip():
            raise ValueError("LOYALTY_API_KEYS must be set in production")
        if self.environment == "production" and self.settable_clock:
            raise ValueError("LOYALTY_SETTABLE_CLOCK is refused in production")
        return self
