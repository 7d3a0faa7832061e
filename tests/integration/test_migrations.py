"""Every service's migrations go down to nothing and up again: a rollback of a release works."""

from __future__ import annotations

import asyncio
import importlib

import pytest
from alembic import command
from harness import SERVICES, Infra

from loyalty_shared.entrypoint import alembic_config


@pytest.mark.parametrize("service", SERVICES)
async def test_downgrade_to_base_and_upgrade_again(infra: Infra, service: str) -> None:
    url = infra.sqlalchemy_url(await infra.new_database(service))
    config = alembic_config(importlib.import_module(f"{service}_service.migrate").MIGRATIONS, url)
    # alembic runs its own event loop (the services' env.py): off this test's loop
    await asyncio.to_thread(command.downgrade, config, "base")
    await asyncio.to_thread(command.upgrade, config, "head")
