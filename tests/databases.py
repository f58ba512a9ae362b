"""Throwaway ledger databases for tests: a SQLite file, or a PostgreSQL database of its own.

Each PostgreSQL test database is created on the server the ``postgres_url`` fixture reaches and
dropped afterwards (connections still open are ended first), so runs never see each other's rows.
"""

import contextlib
import uuid

import psycopg
from sqlalchemy.engine import make_url


def _admin_dsn(url):
    parsed = make_url(url).set(drivername="postgresql")
    return parsed.render_as_string(hide_password=False)


@contextlib.contextmanager
def postgres_database(url):
    """A fresh database on the server of ``url``; yields its SQLAlchemy URL."""
    name = f"magsync_test_{uuid.uuid4().hex[:12]}"
    admin = _admin_dsn(url)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(url).set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
