"""Alembic environment: the engine comes from ihe_engine.storage.Database, never from an ini file."""

from alembic import context

from ihe_engine.storage import all_models  # noqa: F401  (registers every table)
from ihe_engine.storage.base import Base

target_metadata = Base.metadata


def run_migrations() -> None:
    engine = context.config.attributes.get("engine")
    if engine is None:
        url = context.config.get_main_option("sqlalchemy.url")
        from sqlalchemy import create_engine

        engine = create_engine(url)
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=target_metadata,
                          render_as_batch=connection.dialect.name == "sqlite", compare_type=True)
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()


run_migrations()
