"""Settings files and ``magsync --env-file``: the file's settings reach every command, over the
environment's; a malformed file stops the command before it does anything."""

import stat
import subprocess

import pytest

from magsync.cli.env_file import EnvFileError, read_env_file, write_env_file
from tests import processes

TRICKY = {
    "SALESFORCE_STAGE_MAP": "new=Prospecting;complete=Closed Won",
    "MAGENTO_WEBHOOK_SECRET": "a'b\"c # not a comment = still the value",
    "FLOWER_BASIC_AUTH": "  admin:pass  ",
    "SALESFORCE_USERNAME": "'quoted'",
    "SALESFORCE_LEAD_COMPANY": "Société Générale",
    "EMPTY": "",
}


def test_what_is_written_reads_back_exactly_and_only_the_owner_can_read_it(tmp_path):
    path = write_env_file(tmp_path / "magsync.env", TRICKY, header=["a demo", "second line"])
    assert read_env_file(path) == TRICKY
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text(encoding="utf-8").startswith("# a demo\n# second line\n")
    assert [p.name for p in tmp_path.iterdir()] == ["magsync.env"]


def test_rewriting_a_file_others_could_read_leaves_it_owner_only(tmp_path):
    path = tmp_path / "magsync.env"
    path.write_text("OLD=1\n", encoding="utf-8")
    path.chmod(0o644)
    write_env_file(path, {"NEW": "2"})
    assert read_env_file(path) == {"NEW": "2"}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


@pytest.mark.parametrize(
    ("values", "message"),
    [({"KEY": "two\nlines"}, "one line per value"), ({"NOT A NAME": "x"}, "variable name")],
)
def test_a_value_it_cannot_write_is_refused_and_nothing_is_written(tmp_path, values, message):
    path = tmp_path / "magsync.env"
    with pytest.raises(ValueError, match=message):
        write_env_file(path, values)
    assert list(tmp_path.iterdir()) == []


def test_reading_accepts_comments_blank_lines_export_and_both_quotes(tmp_path):
    path = tmp_path / ".env"
    path.write_text(
        "# comment\n\nexport A=1\nB = \"two words\"\nC='x'\nD=a=b\nA=last wins\n",
        encoding="utf-8",
    )
    assert read_env_file(path) == {"A": "last wins", "B": "two words", "C": "x", "D": "a=b"}
    assert read_env_file(tmp_path / "missing.env") == {}


@pytest.mark.parametrize("line", ["JUST_A_NAME", "BAD KEY=1", "=value", "1X=2"])
def test_a_malformed_line_is_an_error_naming_the_line(tmp_path, line):
    path = tmp_path / ".env"
    path.write_text(f"OK=1\n{line}\n", encoding="utf-8")
    with pytest.raises(EnvFileError, match=r"line 2: expected KEY=value"):
        read_env_file(path)


def _magsync(*args, env=None, cwd=None):
    return subprocess.run(
        [str(processes.BIN / "magsync"), *args],
        env={**processes.BASE_ENV, **(env or {})},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_file_wins_over_the_environment_for_any_command(tmp_path):
    """``db upgrade`` migrates the ledger the file names, not the environment's."""
    in_file, in_env = tmp_path / "from-file.db", tmp_path / "from-env.db"
    settings = write_env_file(tmp_path / "demo.env", {"DATABASE_URL": f"sqlite:///{in_file}"})
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = _magsync(
        "--env-file",
        str(settings),
        "db",
        "upgrade",
        env={"DATABASE_URL": f"sqlite:///{in_env}"},
        cwd=elsewhere,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert in_file.is_file()
    assert not in_env.exists()
    current = _magsync("--env-file", str(settings), "db", "current", cwd=elsewhere)
    assert current.returncode == 0, current.stdout + current.stderr
    assert "current" in current.stdout


def test_variables_the_file_does_not_name_come_from_the_environment(tmp_path):
    ledger = tmp_path / "ledger.db"
    settings = write_env_file(tmp_path / "demo.env", {"LOG_LEVEL": "WARNING"})
    result = _magsync(
        "--env-file", str(settings), "db", "upgrade", env={"DATABASE_URL": f"sqlite:///{ledger}"}
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert ledger.is_file()


def test_a_malformed_or_missing_file_stops_the_command_before_it_runs(tmp_path):
    ledger = tmp_path / "ledger.db"
    bad = tmp_path / "bad.env"
    bad.write_text(f"DATABASE_URL=sqlite:///{ledger}\nnot a setting\n", encoding="utf-8")
    result = _magsync("--env-file", str(bad), "db", "upgrade")
    assert result.returncode == 2
    assert "line 2: expected KEY=value" in result.stderr
    assert not ledger.exists()
    missing = _magsync("--env-file", str(tmp_path / "nope.env"), "db", "upgrade")
    assert missing.returncode == 2
    assert "nope.env" in missing.stderr and "does not exist" in missing.stderr
