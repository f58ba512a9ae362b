"""``magsync --help`` lists every command with a whole sentence: not cut short, no reST markup."""

import click
import pytest
from click.testing import CliRunner

from magsync.cli import main

GROUPS = [(), ("db",), ("dead",), ("sandbox",)]


def listed(path):
    """``(name, short help)`` of each command ``magsync <path> --help`` lists, 80 columns wide."""
    result = CliRunner().invoke(main, [*path, "--help"], terminal_width=80)
    assert result.exit_code == 0, result.output
    section = result.output.split("\nCommands:\n", 1)[1]
    rows = [line.split(None, 1) for line in section.splitlines() if line.startswith("  ")]
    return [(row[0], row[1] if len(row) > 1 else "") for row in rows]


def first_line(path, name):
    group = main
    with click.Context(main) as ctx:
        for step in path:
            group = group.get_command(ctx, step)
        return group.get_command(ctx, name).help.strip().splitlines()[0]


@pytest.mark.parametrize("path", GROUPS, ids=lambda p: " ".join(("magsync", *p)))
def test_each_command_is_listed_with_its_whole_first_line(path):
    commands = listed(path)
    assert commands
    for name, short in commands:
        assert not short.endswith("..."), (name, short)
        assert "``" not in short, (name, short)
        assert short == first_line(path, name), name
        assert short.endswith("."), (name, short)
