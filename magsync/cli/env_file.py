"""Settings files (``KEY=value`` lines): what ``magsync --env-file`` reads and the demo writes.

One setting per line; blank lines and lines starting with ``#`` are ignored; ``export KEY=value``
is accepted; a value wrapped in one pair of matching quotes (``'...'`` or ``"..."``) loses them,
and nothing else is unescaped. A value cannot span lines.
"""

import os
import re
import tempfile
from pathlib import Path

_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class EnvFileError(ValueError):
    """A line of a settings file is not ``KEY=value``; the message names the file and line."""


def read_env_file(path):
    """The file's settings as a dict (later lines win); ``{}`` when the file does not exist.

    Raises ``EnvFileError`` for a file that is not UTF-8 text, or a line that is neither
    blank, a comment nor ``KEY=value``.
    """
    path = Path(path)
    if not path.is_file():
        return {}
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise EnvFileError(f"{path}: not UTF-8 text") from None
    values = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        key = key.strip().removeprefix("export ").strip()
        if not sep or not _KEY.fullmatch(key):
            raise EnvFileError(f"{path}, line {number}: expected KEY=value")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key] = value
    return values


def write_env_file(path, values, header=()):
    """Write ``values`` so that ``read_env_file`` gives them back, readable by the owner only.

    The file is replaced in one step (never seen half-written). ``header`` lines become
    comments at the top. Raises ``ValueError`` for a key that is not a variable name or a value
    with a line break.
    """
    path = Path(path)
    lines = [f"# {line}" for line in header]
    for key, value in values.items():
        if not _KEY.fullmatch(key):
            raise ValueError(f"{key!r} is not an environment variable name")
        if "\n" in value or "\r" in value:
            raise ValueError(f"{key}: a settings file holds one line per value")
        # Quoted, so that leading or trailing spaces and quote characters survive the reading.
        lines.append(f"{key}='{value}'")
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:  # mkstemp makes it 0600
            out.write("\n".join(lines) + "\n")
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path
