"""``python -m <service>_service migrate|serve``: the one command line every service has, and the
Alembic environment every service's migrations run in (async engine, the service's own metadata)."""

from __future__ import annotations

import argparse
import asyncio
import os
from pathlib import Path

from alembic import command, context
from alembic.config import Config
from sqlalchemy import MetaData
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from loyalty_shared.settings import DatabaseSettings


def alembic_config(migrations: Path, database_url: str | None = None) -> Config:
    """Alembic driven from code, for the migrations in ``migrations`` (the service's own history)."""
    config = Config()
    config.set_main_option("script_location", str(migrations))
    config.set_main_option("file_template", "%%(year)d_%%(month).2d_%%(day).2d_%%(rev)s_%%(slug)s")
    if database_url:
        config.attributes["database_url"] = database_url
    return config


def upgrade(migrations: Path, database_url: str | None = None, revision: str = "head") -> None:
    """Apply every pending migration (``LOYALTY_DATABASE_URL`` unless ``database_url`` is given)."""
    command.upgrade(alembic_config(migrations, database_url), revision)


def run_migrations(metadata: MetaData) -> None:
    """The body of a service's ``migrations/env.py``."""
    url = str(context.config.attributes.get("database_url") or DatabaseSettings().database_url)
    if context.is_offline_mode():
        context.configure(url=url, target_metadata=metadata, literal_binds=True)
        with context.begin_transaction():
            context.run_migrations()
        return

    def run(connection: Connection) -> None:
        context.configure(connection=connection, target_metadata=metadata, compare_type=True)
        with context.begin_transaction():
            context.run_migrations()

    async def online() -> None:
        engine = create_async_engine(url)
        async with engine.connect() as connection:
            await connection.run_sync(run)
        await engine.dispose()

    asyncio.run(online())


def main(package: str, migrations: Path, default_port: int, argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=package)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("migrate", help="apply the database migrations (alembic upgrade head)")
    serve = sub.add_parser("serve", help="serve REST and consume events")
    serve.add_argument("--host", default="0.0.0.0")
    serve.add_argument("--port", type=int, default=default_port)
    serve.add_argument(
        "--workers",
        type=int,
        default=int(os.environ.get("LOYALTY_WORKERS", "1")),
        help="processes; each consumes its share of the partitions (default: LOYALTY_WORKERS or 1)",
    )
    args = parser.parse_args(argv)
    if args.command == "migrate":
        upgrade(migrations)
        return 0
    import uvicorn

    uvicorn.run(
        f"{package}.app:build_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_config=None,
        access_log=False,
    )
    return 0
