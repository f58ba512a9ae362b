r"""SOQL text built safely: values are written as escaped string literals, never pasted in.

``literal("Bob's \ BBQ")`` gives ``'Bob\'s \\ BBQ'``. Inside a literal SOQL reserves the
single quote and the backslash and knows the escapes ``\n \r \t \b \f \" \' \\`` and
``\uXXXX``; every other character, non-ASCII included, stands for itself. Other control
characters are written as ``\uXXXX``.

``in_chunks(template, values)`` writes ``... IN (...)`` queries over many values, as few as fit
Salesforce's limits: a SOQL statement holds at most 100,000 characters, and a REST request's URI
and headers together at most 16,384 bytes (a GET query carries the statement URL-encoded in its
URI; 2,048 bytes are left for the path and the headers).
"""

from urllib.parse import quote_plus

SOQL_LIMIT = 100_000
URI_LIMIT = 16_384
HEADER_ALLOWANCE = 2_048

_ESCAPES = {
    "\\": "\\\\",
    "'": "\\'",
    '"': '\\"',
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\b": "\\b",
    "\f": "\\f",
}


def _escape(char):
    if char in _ESCAPES:
        return _ESCAPES[char]
    if ord(char) < 0x20 or ord(char) == 0x7F:
        return f"\\u{ord(char):04x}"
    return char


def literal(value):
    """``value`` (a string) as a quoted SOQL string literal."""
    if not isinstance(value, str):
        raise TypeError(f"a SOQL string literal needs a str, not {type(value).__name__}")
    return "'" + "".join(_escape(char) for char in value) + "'"


def in_chunks(template, values, max_length=SOQL_LIMIT, max_encoded=URI_LIMIT - HEADER_ALLOWANCE):
    """SOQL statements ``template`` with ``{}`` replaced by comma-separated literals of
    ``values``, each statement at most ``max_length`` characters and ``max_encoded`` bytes once
    URL-encoded; every value in exactly one statement, in order. None for no values."""
    literals = [literal(value) for value in values]
    base = len(template) - 2
    base_encoded = len(quote_plus(template.replace("{}", "")))
    chunk, length, encoded = [], base, base_encoded
    for text in literals:
        size, size_encoded = len(text) + 1, len(quote_plus(text)) + 3  # with its ","
        if chunk and (length + size > max_length or encoded + size_encoded > max_encoded):
            yield template.replace("{}", ",".join(chunk))
            chunk, length, encoded = [], base, base_encoded
        chunk.append(text)
        length += size
        encoded += size_encoded
    if chunk:
        yield template.replace("{}", ",".join(chunk))
