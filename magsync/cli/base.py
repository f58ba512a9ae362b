"""What the ``magsync`` commands share: settings with a clean exit, the Celery app, exec."""

import os
import shutil
import sys

import click

from magsync.settings import ConfigError, Settings


def load_settings():
    """Settings from the environment, or a clean exit naming what is wrong."""
    try:
        return Settings.from_env()
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


def exec_process(argv):
    """Replace this process with ``argv`` (so signals reach it directly, as Procfiles expect)."""
    executable = shutil.which(argv[0]) or argv[0]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(executable, argv)  # noqa: S606 - argv is a fixed command line, not user input


def celery_app(settings):
    from magsync.messaging.app import create_celery

    return create_celery(settings)


class LazyGroup(click.Group):
    """A group whose ``lazy_commands`` (name -> ``module:attribute``) load only when called, so
    ``magsync worker`` never imports the ledger's or the sandboxes' commands."""

    def __init__(self, *args, lazy_commands=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.lazy_commands = dict(lazy_commands or {})

    def list_commands(self, ctx):
        return sorted({*super().list_commands(ctx), *self.lazy_commands})

    def get_command(self, ctx, name):
        if name in self.lazy_commands:
            import importlib

            module, _, attribute = self.lazy_commands[name].partition(":")
            return getattr(importlib.import_module(module), attribute)
        return super().get_command(ctx, name)
