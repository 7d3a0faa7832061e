"""Alembic environment for the rewards database."""

from loyalty_shared.entrypoint import run_migrations
from rewards_service.models import metadata

run_migrations(metadata)
