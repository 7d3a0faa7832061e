"""``python -m rewards_service migrate`` applies every migration; tests and tools call ``upgrade``."""

from __future__ import annotations

from pathlib import Path

from loyalty_shared import entrypoint

MIGRATIONS = Path(__file__).parent / "migrations"


def upgrade(database_url: str | None = None, revision: str = "head") -> None:
    entrypoint.upgrade(MIGRATIONS, database_url, revision)
