"""Salesforce record ids: 15-character case-sensitive ids and their 18-character case-safe form.

An id is the object's 3-character key prefix, a 2-character instance code, a reserved ``0`` and
a 9-character base-62 serial. The 18-character form appends a 3-character suffix that encodes,
for each 5-character chunk of the 15-character id, which characters are upper case, so the id
survives case-insensitive systems (spreadsheets, some databases).
"""

import re

_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_SUFFIX = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
_SHAPE = re.compile(r"^[0-9A-Za-z]{15}(?:[0-9A-Za-z]{3})?$")
INSTANCE = "5g"


def suffix(id15):
    """The 3-character case-safe suffix of a 15-character id."""
    out = []
    for start in (0, 5, 10):
        bits = 0
        for i, char in enumerate(id15[start : start + 5]):
            if "A" <= char <= "Z":
                bits |= 1 << i
        out.append(_SUFFIX[bits])
    return "".join(out)


def make(prefix, serial):
    """The 18-character id with the given key prefix and serial number."""
    digits = []
    for _ in range(9):
        serial, rest = divmod(serial, 62)
        digits.append(_BASE62[rest])
    id15 = f"{prefix}{INSTANCE}0{''.join(reversed(digits))}"
    return id15 + suffix(id15)


def normalize(value):
    """The 18-character form of a 15- or 18-character id, or None when it is not a valid id.

    An 18-character id whose suffix does not match its first 15 characters is not valid; the
    suffix itself is compared case-insensitively, as Salesforce does.
    """
    if not isinstance(value, str) or not _SHAPE.match(value):
        return None
    id15 = value[:15]
    expected = suffix(id15)
    if len(value) == 18 and value[15:].upper() != expected:
        return None
    return id15 + expected
