"""Every service's migrations go down to nothing and up again: a rollback of a release works."""

from __future__ import annotations

import asyncio
import importlib

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from harness import SERVICES, Infra
from sqlalchemy.ext.asyncio import create_async_engine

from loyalty_shared.entrypoint import alembic_config


@pytest.mark.parametrize("service", SERVICES)
async def test_downgrade_to_base_and_upgrade_again(infra: Infra, service: str) -> None:
    url = infra.sqlalchemy_url(await infra.new_database(service))
    config = alembic_config(importlib.import_module(f"{service}_service.migrate").MIGRATIONS, url)
    # alembic runs its own event loop (the services' env.py): off this test's loop
    await asyncio.to_thread(command.downgrade, config, "base")
    await asyncio.to_thread(command.upgrade, config, "head")


@pytest.mark.parametrize("service", SERVICES)
async def test_migrations_build_what_the_models_declare(infra: Infra, service: str) -> None:
    """No drift: the schema the migrations build is the one the models (and the statements built
    from them) expect, column for column, index for index."""
    url = infra.sqlalchemy_url(await infra.new_database(service))
    config = alembic_config(importlib.import_module(f"{service}_service.migrate").MIGRATIONS, url)
    await asyncio.to_thread(command.upgrade, config, "head")
    metadata = importlib.import_module(f"{service}_service.models").metadata
    engine = create_async_engine(url)
    try:
        async with engine.connect() as connection:
            diff = await connection.run_sync(
                lambda sync: compare_metadata(MigrationContext.configure(sync), metadata)
            )
    finally:
        await engine.dispose()
    assert diff == []
