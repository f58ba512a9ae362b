"""``magsync db upgrade`` / ``magsync db current`` and ``magsync trace <increment_id>``."""

import json
from pathlib import Path

import click

from magsync.ledger import migrate
from magsync.ledger.store import Ledger, LedgerUnavailable, sqlite_path
from magsync.settings import mask_url

TIME_FORMAT = "%Y-%m-%d %H:%M:%S"


def _settings():
    from magsync.cli.base import load_settings

    return load_settings()


def _open_ledger(settings, create=False):
    """The ledger of ``settings``; without ``create``, a SQLite file must already exist."""
    path = sqlite_path(settings.database_url)
    if path is not None and not create and not Path(path).is_file():
        raise click.ClickException(
            f"no ledger database at {path} (the worker creates it; or run `magsync db upgrade`)"
        )
    return Ledger(settings)


@click.group()
def db():
    """Migrate or inspect the sync ledger's database (DATABASE_URL)."""


@db.command()
@click.argument("revision", default="head")
def upgrade(revision):
    """Migrate the ledger to REVISION (default: the newest).

    Safe to run on every release.
    """
    settings = _settings()
    ledger = _open_ledger(settings, create=True)
    try:
        before, after = migrate.upgrade(ledger.engine, revision)
    except Exception as exc:
        cause = mask_url(f"{type(exc).__name__}: {exc}")
        raise click.ClickException(
            f"migrating {mask_url(settings.database_url)} failed: {cause}"
        ) from None
    finally:
        ledger.close()
    where = mask_url(settings.database_url)
    if before == after:
        click.echo(f"ledger at {where} already at revision {after}")
    else:
        click.echo(f"ledger at {where} migrated from {before or 'empty'} to {after}")


@db.command()
def current():
    """Print the ledger's revision and the one this magsync needs."""
    settings = _settings()
    ledger = _open_ledger(settings)
    try:
        with ledger.engine.connect() as connection:
            revision = migrate.current_revision(connection)
    finally:
        ledger.close()
    head = migrate.head_revision()
    state = "current" if revision == head else "behind: run `magsync db upgrade`"
    click.echo(f"revision {revision or 'none'} (this magsync needs {head}; {state})")


def _time(value):
    return value.strftime(TIME_FORMAT) if value else "-"


def _describe_event(event):
    detail = dict(event.detail)
    parts = []
    if detail.get("source"):
        parts.append(f"from {detail.pop('source')}")
    if event.record_id:
        parts.append(f"{detail.pop('sobject', 'record')} {event.record_id}")
    created = detail.pop("created", None)
    if created is not None:
        parts.append("created" if created else "updated")
    for key in ("stage", "api_calls", "batch", "replaced_by", "superseded_by", "event_id"):
        if detail.get(key) is not None:
            parts.append(f"{key.replace('_id', '')}={detail.pop(key)}")
    if detail.get("reason"):
        parts.append(f"reason={detail.pop('reason')}")
    if detail.get("attempt") is not None:
        parts.append(f"attempt={detail.pop('attempt')}")
    if detail.get("error"):
        parts.append(f"error={detail.pop('error')!r}")
    return "  ".join(parts)


def _order_lines(state):
    lines = [
        f"order {state.increment_id}  entity {state.entity_id or '-'}  "
        f"store {state.store_id if state.store_id is not None else '-'}  "
        f"buyer {state.customer_email or '-'}",
        f"  {state.sobject or 'record'} {state.record_id or '-'}  account {state.account_id or '-'}"
        f"  contact {state.contact_id or '-'}  contact role {state.contact_role_id or '-'}",
        f"  status {state.status}  attempts {state.attempts}  last applied "
        f"{_time(state.updated_at)} (state {state.state or '-'}, stage {state.stage or '-'})",
        f"  first seen {_time(state.first_seen_at)}  synced {_time(state.synced_at)}  "
        f"payload {state.payload_hash[:12] if state.payload_hash else '-'}",
    ]
    if state.in_doubt:
        landing = "may still land" if state.interrupted else "Salesforce answered: cannot land"
        lines.append(
            f"  unconfirmed write of {_time(state.pending_updated_at)} "
            f"since {_time(state.apply_started_at)} ({landing})"
        )
    if state.parent_increment_id:
        lines.append(f"  replaces order {state.parent_increment_id}")
    if state.replaced_by:
        lines.append(f"  replaced by edited order {state.replaced_by}")
    if state.last_error:
        lines.append(f"  last error: {state.last_error}")
    return lines


@click.command()
@click.argument("increment_id")
@click.option("--json", "as_json", is_flag=True, help="Print the row and history as JSON.")
def trace(increment_id, as_json):
    """Print an order's ledger row and its history.

    The row holds the order's Salesforce ids; the history is listed oldest first.
    """
    settings = _settings()
    ledger = _open_ledger(settings)
    try:
        with ledger.engine.connect() as connection:
            if migrate.current_revision(connection) is None:
                raise click.ClickException("the ledger has no tables yet: run `magsync db upgrade`")
        state, events = ledger.history(increment_id)
    except LedgerUnavailable as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        ledger.close()
    if state is None and not events:
        raise click.ClickException(f"order {increment_id} is not in the ledger")
    if as_json:
        document = {
            "order": state.__dict__ if state else None,
            "history": [event.__dict__ for event in events],
        }
        click.echo(json.dumps(document, indent=2, ensure_ascii=False, default=str))
        return
    if state is not None:
        for line in _order_lines(state):
            click.echo(line)
    click.echo("history")
    for event in events:
        click.echo(
            f"  {_time(event.at)}  {event.kind:<17}  {_time(event.updated_at):<19}  "
            f"{_describe_event(event)}".rstrip()
        )
