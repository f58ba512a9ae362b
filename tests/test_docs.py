"""The README renders, and the commands it promises exist."""

from pathlib import Path

import docutils.core
import docutils.utils
from click.testing import CliRunner

from magsync.cli import main

ROOT = Path(__file__).parent.parent


def test_readme_is_valid_restructuredtext():
    docutils.core.publish_doctree(
        (ROOT / "README.rst").read_text(encoding="utf-8"),
        settings_overrides={"report_level": 2, "halt_level": 2},
    )


def test_readme_commands_exist():
    text = (ROOT / "README.rst").read_text(encoding="utf-8")
    for script in ("scripts/run", "scripts/test"):
        assert script in text
        assert (ROOT / script).is_file()
    runner = CliRunner()
    for command in (["worker", "--help"], ["flower", "--help"], ["stack", "--help"]):
        assert runner.invoke(main, command).exit_code == 0, command


def test_procfile_processes():
    lines = (ROOT / "Procfile").read_text().splitlines()
    kinds = {line.split(":", 1)[0] for line in lines if line.strip()}
    assert {"web", "worker", "flower"} <= kinds
