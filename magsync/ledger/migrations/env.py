"""alembic's environment for the ledger: migrations run on the connection magsync hands over.

``magsync db upgrade`` (``magsync.ledger.migrate.upgrade``) opens the connection and the
transaction; run without one (the ``alembic`` command), the environment connects to
``DATABASE_URL`` itself.
"""

from alembic import context

from magsync.ledger.models import Base


def run_migrations(connection):
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        # SQLite alters tables by copying them; alembic's batch mode does that.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def main():
    if context.is_offline_mode():
        raise SystemExit("magsync's ledger migrations run against a database, not as SQL scripts")
    connection = context.config.attributes.get("connection")
    if connection is not None:
        run_migrations(connection)
        return
    from magsync.ledger.store import create_ledger_engine
    from magsync.settings import Settings

    engine = create_ledger_engine(Settings.from_env().database_url)
    try:
        with engine.begin() as connection:
            run_migrations(connection)
    finally:
        engine.dispose()


main()
