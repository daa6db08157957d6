"""Alembic environment: runs migrations against the URL given by `gateway.registry.migrate_db`."""

from alembic import context

from gateway.registry.engine import make_engine
from gateway.registry.schema import metadata

config = context.config


def run() -> None:
    engine = make_engine(config.get_main_option("sqlalchemy.url"))
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=metadata,
            render_as_batch=connection.dialect.name == "sqlite",
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


run()
