"""``magsync dead list|show|replay|purge``: orders set aside with their reason."""

import click

from magsync.cli.base import celery_app, load_settings


@click.group()
def dead():
    """Inspect, replay and purge dead letters.

    Dead letters are the orders set aside with the reason they could not be synced.
    """


def _dead_letters():
    from magsync.messaging.dead_letters import DeadLetters

    settings = load_settings()
    celery = celery_app(settings)
    return DeadLetters(celery, celery.magsync_topology, settings.publish_timeout)


def _selector(letter_id, replay_all, reason):
    if sum(bool(x) for x in (letter_id, replay_all, reason)) != 1:
        raise click.UsageError("give one of: an ID, --all, --reason CODE")
    if replay_all:
        return lambda letter: True
    if reason:
        return lambda letter: letter.code == reason or letter.code.endswith(f":{reason}")
    return lambda letter: letter.id == letter_id


@dead.command("list")
@click.option("--limit", default=100, show_default=True)
@click.option("--reason", default=None, help="Only this reason code.")
def dead_list(limit, reason):
    """List dead letters (they stay in the queue)."""
    letters = _dead_letters().browse(limit=limit)
    shown = [x for x in letters if not reason or x.code == reason]
    for letter in shown:
        s = letter.summary()
        click.echo(
            f"{s['id']}  order={s['order']}  reason={s['reason']}  attempts={s['attempts']}  "
            f"last_failed_at={s['last_failed_at']}  source={s['source']}"
        )
    click.echo(
        f"{len(shown)} dead letter(s)" + (" (limit reached)" if len(letters) >= limit else "")
    )


@dead.command("show")
@click.argument("letter_id")
def dead_show(letter_id):
    """Show one dead letter in full: the order event and the reason."""
    import json

    found = [x for x in _dead_letters().browse() if x.id == letter_id]
    if not found:
        raise click.ClickException(f"no dead letter {letter_id}")
    click.echo(json.dumps(found[0].describe(), indent=2, ensure_ascii=False, default=str))


@dead.command("replay")
@click.argument("letter_id", required=False)
@click.option("--all", "replay_all", is_flag=True, help="Every dead letter.")
@click.option("--reason", default=None, help="Every dead letter with this reason code.")
def dead_replay(letter_id, replay_all, reason):
    """Put dead letters back on the work queue.

    Each is removed from the dead-letter queue once the broker confirmed its re-publish.
    """
    replayed = _dead_letters().replay(_selector(letter_id, replay_all, reason))
    for letter in replayed:
        click.echo(f"replayed {letter.id} (order {letter.order})")
    click.echo(f"{len(replayed)} dead letter(s) replayed")
    if letter_id and not replayed:
        raise click.ClickException(f"no dead letter {letter_id} was replayed")


@dead.command("purge")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def dead_purge(yes):
    """Delete every dead letter."""
    if not yes:
        click.confirm("Delete every dead letter for good?", abort=True)
    click.echo(f"{_dead_letters().purge()} dead letter(s) deleted")
