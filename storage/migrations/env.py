"""Alembic environment: runs against the URL that storage.migrate puts in the config."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from maild.storage.models import Base

url = context.config.get_main_option("sqlalchemy.url")
assert url, "storage.migrate sets sqlalchemy.url"

if context.is_offline_mode():
    context.configure(url=url, target_metadata=Base.metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    engine = create_engine(url)
    with engine.connect() as connection:
        if connection.dialect.name == "sqlite":
            connection.exec_driver_sql("PRAGMA journal_mode=WAL")
            # The PRAGMA autobegan a SQLAlchemy transaction; left open, Alembic would treat it as the
            # caller's ("external") and never commit, so the alembic_version row was rolled back and a
            # second `maildctl init` tried to create the tables again.
            connection.commit()
        context.configure(
            connection=connection,
            target_metadata=Base.metadata,
            render_as_batch=connection.dialect.name == "sqlite",
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()
