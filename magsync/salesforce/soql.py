r"""SOQL text built safely: values are written as escaped string literals, never pasted in.

``literal("Bob's \ BBQ")`` gives ``'Bob\'s \\ BBQ'``. Inside a literal SOQL reserves the
single quote and the backslash and knows the escapes ``\n \r \t \b \f \" \' \\`` and
``\uXXXX``; every other character, non-ASCII included, stands for itself. Other control
characters are written as ``\uXXXX``.
"""

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
