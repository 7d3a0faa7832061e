"""Alembic environment for the tiers database."""

from loyalty_shared.entrypoint import run_migrations
from tiers_service.models import metadata

run_migrations(metadata)
