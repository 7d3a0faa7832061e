"""Database plumbing every service shares: naming convention, engine, the kit's own tables.

A service builds its metadata with ``new_metadata()`` and calls ``kit_tables(metadata)`` so the inbox
and outbox live in the service's own database, under the service's own Alembic history.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from typing import Any, TypeAlias, cast

import asyncpg
from asyncpg.pool import PoolConnectionProxy
from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Enum,
    Identity,
    Index,
    LargeBinary,
    MetaData,
    Numeric,
    String,
    Table,
    TextClause,
    event,
    func,
    text,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase, Session, SessionTransaction
from sqlalchemy.types import JSON

# Every service's money columns: exact, four decimals (rates and multipliers keep the same scale), and
# its times, always with their zone. SCALE is that scale as a Decimal: a value held in memory as it
# reads back (``amount.quantize(SCALE)``).
Money = Numeric(18, 4)
Timestamp = DateTime(timezone=True)
SCALE = Decimal("0.0001")

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def new_metadata() -> MetaData:
    return MetaData(naming_convention=NAMING_CONVENTION)


@dataclass(frozen=True)
class KitTables:
    inbox: Table
    outbox: Table


def kit_tables(metadata: MetaData) -> KitTables:
    """The inbox (consumed event ids) and the outbox (events waiting for the relay); their DDL, for
    the services' migrations, is ``loyalty_shared.migrations``."""
    inbox = Table(
        "inbox",
        metadata,
        Column("consumer", String(100), primary_key=True),
        Column("event_id", String(200), primary_key=True),
        Column("event_type", String(200), nullable=False),
        Column("topic", String(249), nullable=False),
        Column("partition", BigInteger, nullable=False),
        Column("offset", BigInteger, nullable=False),
        Column("processed_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    )
    outbox = Table(
        "outbox",
        metadata,
        Column("id", BigInteger, Identity(always=True), primary_key=True),
        Column("topic", String(249), nullable=False),
        Column("key", String(200), nullable=False),
        Column("event_id", String(200), nullable=False, unique=True),
        Column("event_type", String(200), nullable=False),
        Column("payload", LargeBinary, nullable=False),
        Column("headers", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
        Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        Column("published_at", DateTime(timezone=True), nullable=True),
        Index(
            "ix_outbox_unpublished",
            "id",
            postgresql_where=text("published_at IS NULL"),
        ),
    )
    return KitTables(inbox=inbox, outbox=outbox)


_DEFERRED = "loyalty.deferred_inserts"


def defer_insert(session: AsyncSession, table: Table, row: dict[str, Any]) -> None:
    """Queue a row; every queued row is inserted just before the transaction commits, one
    multi-row INSERT per table, in the order queued.

    For append-only tables a transaction does not read back (the outbox, a ledger): their rows
    become visible, to this transaction too, only at commit. A rolled-back transaction inserts
    nothing; inside a savepoint, use ``deferred_mark`` and ``discard_deferred`` (the consumer
    runner does)."""
    session.info.setdefault(_DEFERRED, []).append((table, row))


def deferred_mark(session: AsyncSession) -> int:
    return len(session.info.get(_DEFERRED, ()))


def discard_deferred(session: AsyncSession, mark: int) -> None:
    """Forget the rows queued since ``mark`` (their savepoint was rolled back)."""
    del session.info.get(_DEFERRED, [])[mark:]


@event.listens_for(Session, "before_commit")
def _insert_deferred(session: Session) -> None:
    queued: list[tuple[Table, dict[str, Any]]] = session.info.pop(_DEFERRED, [])
    by_table: dict[Table, list[dict[str, Any]]] = {}
    for table, row in queued:
        by_table.setdefault(table, []).append(row)
    for table, rows in by_table.items():
        columns = tuple(sorted({key for row in rows for key in row}))
        session.execute(unnest_insert(table, columns), columns_of(table, rows, columns))


@cache
def unnest_insert(
    table: Table, columns: tuple[str, ...], then: str = "", *, overriding: bool = False
) -> TextClause:
    """``INSERT INTO table (columns)`` of many rows in one statement, one array per column
    (``columns_of``, ``arrays_of``), inserted in the arrays' order; ``then`` ends the statement
    (``ON CONFLICT …``, ``RETURNING …``), ``overriding`` inserts the given ids of an ``ALWAYS``
    identity. Its text depends only on its arguments, so it is built once and the driver prepares it
    once per connection, however many rows it carries."""
    dialect = cast(Any, postgresql).dialect()
    arrays = []
    for name in columns:
        kind = table.c[name].type
        if isinstance(kind, JSON):  # sent as text (see columns_of), cast by the server
            arrays.append(f"CAST(CAST(:{name} AS text[]) AS {kind.compile(dialect=dialect)}[])")
        elif isinstance(kind, String) and not isinstance(kind, Enum):
            # as text: the insert refuses a value too long, where a cast to VARCHAR(n) would cut it
            arrays.append(f"CAST(:{name} AS text[])")
        else:
            arrays.append(f"CAST(:{name} AS {kind.compile(dialect=dialect)}[])")
    names = ", ".join(f'"{name}"' for name in columns)
    statement = f'INSERT INTO "{table.name}" ({names}) '
    if overriding:
        statement += "OVERRIDING SYSTEM VALUE "
    statement += (
        f"SELECT {names} FROM unnest({', '.join(arrays)}) "
        f"WITH ORDINALITY AS rows ({names}, ordinality) ORDER BY ordinality"
    )
    return text(f"{statement} {then}" if then else statement)


def arrays_of(rows: Sequence[Any], names: Sequence[str]) -> dict[str, list[Any]]:
    """Rows (objects with these attributes) as one array per column: the parameters of an
    ``unnest`` statement, one array parameter per column."""
    return {name: [getattr(row, name) for row in rows] for name in names}


def columns_of(
    table: Table, rows: Sequence[Mapping[str, Any]], columns: Sequence[str]
) -> dict[str, list[Any]]:
    """Rows as one list per column (a missing value is NULL; JSON as text): the parameters of
    ``unnest_insert``."""
    arrays = {name: [row.get(name) for row in rows] for name in columns}
    for name in columns:
        if isinstance(table.c[name].type, JSON):
            arrays[name] = [None if value is None else json.dumps(value) for value in arrays[name]]
    return arrays


@event.listens_for(Session, "after_transaction_end")
def _forget_deferred(session: Session, transaction: SessionTransaction) -> None:
    # Only the outermost transaction's end (a rollback: a commit inserted them already); a
    # savepoint's rollback is handled by ``discard_deferred``.
    if transaction.parent is None:
        session.info.pop(_DEFERRED, None)


# The writers' statements are planned for their parameters. asyncpg prepares each statement once per
# connection, and after five executions PostgreSQL may switch a prepared statement to a generic plan
# costed on the table as it was then: a service started on an empty database kept a sequential scan
# for ``order_id = ANY($1)`` while the table grew (12 ms a batch at 20,000 orders, and growing) until
# an ANALYZE replanned it. Planning costs ~0.1 ms a statement, a few statements per batch of events.
# The read pool keeps PostgreSQL's default: one single-member lookup per request, where planning
# would cost about as much as the read (PostgreSQL's CPU per balance read rose by two thirds).
SERVER_SETTINGS = {"plan_cache_mode": "force_custom_plan"}


def create_engine(url: str, *, pool_size: int = 10) -> AsyncEngine:
    # No pre-ping (a round trip per checkout); a connection the server dropped is discarded when it
    # fails, and connections are recycled every 30 minutes. No overflow: under load, connections
    # opened above the pool would be closed as soon as they are returned and opened again for the
    # next request (connect, TLS probe, authentication, every statement prepared anew), which costs
    # far more than waiting a moment for a pooled one.
    return create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=0,
        pool_recycle=1800,
        connect_args={"server_settings": SERVER_SETTINGS},
    )


# what a read gets from ``Runtime.reading`` (tests may pass a plain connection)
ReadConnection: TypeAlias = "asyncpg.Connection[asyncpg.Record] | PoolConnectionProxy[asyncpg.Record]"


async def _keep(connection: ReadConnection) -> None:
    """Read connections change no session state (no transaction, lock, cursor, setting or LISTEN
    outlives a statement), so there is nothing to reset: no ``RESET ALL`` round trip per read."""


def asyncpg_dsn(url: str) -> str:
    """The SQLAlchemy database URL as a DSN asyncpg connects to itself."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def create_read_pool(url: str, *, size: int) -> asyncpg.Pool[asyncpg.Record]:
    """Connections for the fast read path (``Runtime.reading``): asyncpg's own pool, statements
    prepared once per connection, each read one round trip in autocommit."""
    return await asyncpg.create_pool(asyncpg_dsn(url), min_size=1, max_size=size, reset=_keep)


def session_factory(engine: AsyncEngine, **info: Any) -> async_sessionmaker[AsyncSession]:
    """Sessions that carry ``info`` (e.g. the service's clock, see ``loyalty_shared.clock.now``)."""
    return async_sessionmaker(engine, expire_on_commit=False, info=info)


def table(model: type[DeclarativeBase]) -> Table:
    """A model's Core table, for statements built once and bound at execution."""
    return cast(Table, model.__table__)
