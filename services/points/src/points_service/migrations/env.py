"""Alembic environment for the points database."""

from loyalty_shared.entrypoint import run_migrations
from points_service.models import metadata

run_migrations(metadata)
