"""The migrations build exactly the schema the models describe, and step down and up again."""

from __future__ import annotations

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine

from maild.storage.migrate import alembic_config
from maild.storage.models import Base


def _differences(url: str) -> list[object]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            return list(compare_metadata(context, Base.metadata))
    finally:
        engine.dispose()


def test_the_migrated_schema_matches_the_models(database_url: str) -> None:
    assert _differences(database_url) == []


def test_downgrade_to_the_first_revision_and_back(database_url: str) -> None:
    config = alembic_config(database_url)
    command.downgrade(config, "0001")
    command.upgrade(config, "head")
    assert _differences(database_url) == []
