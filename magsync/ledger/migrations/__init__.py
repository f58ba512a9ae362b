"""alembic migrations of the ledger (run through ``magsync db upgrade``)."""
