"""CSV as Bulk API 2.0 reads job data and writes job results.

Reading (``parse``), by the rules of Salesforce's "Prepare CSV Files":

- UTF-8 (a leading byte-order mark is dropped). The first record names the fields.
- Fields are separated by the job's ``columnDelimiter`` (``COMMA`` by default), records end with
  the job's ``lineEnding`` (``LF`` by default, or ``CRLF``).
- A field that holds the delimiter, a double quote or a line break is enclosed in double quotes,
  and each double quote inside it is doubled. Values are not trimmed: ``John, Smith`` has the
  value `` Smith``.
- A double quote anywhere else (``"John", "Smith"``: a space before the opening quote, or text
  after the closing one) is an error for that record only (``Record.error``).
- A record that ends with another line ending than the job's makes the whole data unusable
  (``CsvError``, the message Salesforce fails the job with), as does a quote that never closes.
- Empty lines are skipped.

Writing (``write``): the header with the ``sf__`` columns quoted and the uploaded field names as
they came, every value quoted, in the job's delimiter and line ending.
"""

import re
from dataclasses import dataclass

DELIMITERS = {
    "BACKQUOTE": "`",
    "CARET": "^",
    "COMMA": ",",
    "PIPE": "|",
    "SEMICOLON": ";",
    "TAB": "\t",
}
LINE_ENDINGS = {"LF": "\n", "CRLF": "\r\n"}
UNESCAPED_QUOTE = (
    "Failed to parse CSV. Found unescaped quote. A value with quote should be within a quote"
)


class CsvError(Exception):
    """The data as a whole cannot be read; ``str()`` is the job's ``errorMessage``."""


@dataclass
class Record:
    """One record of the data: its values, and the reason it cannot be used, if any."""

    values: list
    error: str | None = None


def _wrong_line_ending(line_ending):
    return CsvError(
        "ClientInputError : LineEnding is invalid on user data. "
        f"Current LineEnding setting is {line_ending}"
    )


class _Reader:
    """One pass over the text; ``records()`` yields ``Record`` objects."""

    def __init__(self, text, delimiter, line_ending):
        self.text = text
        self.sep = DELIMITERS[delimiter]
        self.line_ending = line_ending
        self.crlf = line_ending == "CRLF"
        # The next delimiter or line feed, whichever comes first.
        self.stop = re.compile(f"[{re.escape(self.sep)}\\n]")
        self.pos = 0

    def records(self):
        while self.pos < len(self.text):
            record = self._record()
            if record.values != [""] or record.error:
                yield record

    def _record(self):
        values, error = [], None
        while True:
            if self.text.startswith('"', self.pos):
                value = self._quoted()
                ended = self._after_quote()
                if ended is None:
                    error = UNESCAPED_QUOTE
                    rest, ended = self._bare()
                    value += rest
            else:
                value, ended = self._bare()
                if '"' in value:
                    error = UNESCAPED_QUOTE
            values.append(value)
            if ended:
                return Record(values, error)

    def _bare(self):
        """The unquoted value at the position, and True when the record ends after it."""
        text, start = self.text, self.pos
        match = self.stop.search(text, start)
        if match is None:
            self.pos = len(text)
            return text[start:], True
        end = match.start()
        self.pos = end + 1
        value = text[start:end]
        if text[end] != "\n":
            return value, False
        if value.endswith("\r"):
            if not self.crlf:
                raise _wrong_line_ending(self.line_ending)
            return value[:-1], True
        if self.crlf:
            raise _wrong_line_ending(self.line_ending)
        return value, True

    def _quoted(self):
        text, start, parts = self.text, self.pos + 1, []
        while True:
            close = text.find('"', start)
            if close == -1:
                raise CsvError(
                    "InvalidBatch : Failed to parse CSV. EOF reached before closing an opened quote"
                )
            parts.append(text[start:close])
            if text.startswith('"', close + 1):
                parts.append('"')
                start = close + 2
                continue
            self.pos = close + 1
            return "".join(parts)

    def _after_quote(self):
        """True at the end of the record, False before the next field, None for anything else."""
        text, pos = self.text, self.pos
        if pos >= len(text):
            return True
        if text[pos] == self.sep:
            self.pos = pos + 1
            return False
        if text.startswith("\r\n", pos):
            if not self.crlf:
                raise _wrong_line_ending(self.line_ending)
            self.pos = pos + 2
            return True
        if text[pos] == "\n":
            if self.crlf:
                raise _wrong_line_ending(self.line_ending)
            self.pos = pos + 1
            return True
        return None


def parse(data, delimiter="COMMA", line_ending="LF"):
    """``(field names, records)`` of ``data`` (bytes); raises ``CsvError``.

    An error in the header record is an error of the whole data.
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise CsvError("InvalidBatch : Failed to parse CSV. The data is not UTF-8") from None
    if text.startswith("\ufeff"):
        text = text[1:]
    records = list(_Reader(text, delimiter, line_ending).records())
    if not records:
        raise CsvError("InvalidBatch : Records not found")
    header = records[0]
    if header.error:
        raise CsvError(f"InvalidBatch : {header.error}")
    return header.values, records[1:]


def quote(value):
    return '"' + value.replace('"', '""') + '"'


def _name(name, sep):
    return quote(name) if any(c in name for c in (sep, '"', "\r", "\n")) else name


def write(prefix, header, rows, delimiter="COMMA", line_ending="LF"):
    """CSV text: the quoted ``prefix`` columns and the ``header`` names, then ``rows`` quoted."""
    sep, end = DELIMITERS[delimiter], LINE_ENDINGS[line_ending]
    names = [quote(name) for name in prefix] + [_name(name, sep) for name in header]
    lines = [sep.join(names)]
    lines.extend(sep.join(quote(value) for value in row) for row in rows)
    return end.join(lines) + end
