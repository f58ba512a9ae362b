"""The ledger's schema version, managed by alembic and run from magsync itself.

The migration scripts live in ``magsync/ledger/migrations`` (shipped inside the package, so an
installed magsync can migrate without a checkout). ``upgrade(engine)`` migrates in one
transaction; on PostgreSQL it first takes an advisory lock, so two release phases that start at
once run the migrations one after the other, and the second finds nothing left to do.
"""

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text

from magsync.ledger.locks import lock_key

MIGRATIONS = Path(__file__).parent / "migrations"
VERSION_TABLE = "alembic_version"  # alembic's default


def alembic_config(connection=None):
    """An alembic ``Config`` for magsync's migrations, optionally bound to ``connection``."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision():
    """The revision this version of magsync needs."""
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(connection):
    """The database's revision (None for a database alembic has never touched)."""
    # Read directly rather than through a MigrationContext, which logs on every use.
    if not inspect(connection).has_table(VERSION_TABLE):
        return None
    return connection.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar()  # noqa: S608


def upgrade(engine, revision="head"):
    """Migrate the database to ``revision``; returns ``(before, after)`` revisions."""
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": lock_key("schema", "upgrade")}
            )
        before = current_revision(connection)
        command.upgrade(alembic_config(connection), revision)
        return before, current_revision(connection)
