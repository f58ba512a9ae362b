"""Redaction: secrets and buyer data out of logs, alerts, task events and dead-letter listings.

``redact(text)`` is the one function every outlet uses: the log formatter (every record,
Celery's own included, with its exception text), Sentry (``before_send`` and
``before_breadcrumb``, over the whole event), the exception a task raises (which Celery logs and
puts into its task events for Flower), and ``magsync dead list``. It masks

- secrets: bearer tokens, ``password=``/``secret=``/``token=``/``assertion=``/``signature=``
  pairs, PEM private keys and the password of any URL (``settings.mask_url``);
- buyer data by value: the email addresses, phone numbers, street lines and names of the order
  being handled (``with buyer(order):`` around its handling, ``remember(order)`` for a version
  fetched meanwhile), also URL-encoded, SOQL-escaped or JSON-escaped;
- buyer data by pattern: anything shaped like an email address or a phone number, whichever
  order it came from.

The operator's own tools keep the data: the ledger, ``magsync trace`` and ``magsync dead show``.
"""

import contextlib
import contextvars
import functools
import json
import re
from urllib.parse import quote, quote_plus

from magsync.settings import mask_url

FILTERED = "[Filtered]"
REDACTED = "[redacted]"
EMAIL = "[email]"
PHONE = "[phone]"

# "Bearer <token>" as an Authorization header writes it; not the grant name "jwt-bearer" that
# log lines carry before their next field.
_SECRETS = re.compile(
    r"(?i)((?<![\w-])bearer\s+[\w.!\-]+|(?:password|secret|token|assertion|signature)=[^&\s\"']+"
    r"|-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----)"
)

# What each of those patterns needs in the lowered text: a line without any is left alone.
_SECRET_HINTS = (
    "bearer",
    "password=",
    "secret=",
    "token=",
    "assertion=",
    "signature=",
    "private key-----",
)

# A local part (plain, backslash-escaped as in SOQL, or quoted), "@" (or %40 in a URL), and a
# domain whose last label is letters, so worker names such as celery@host and URLs such as
# guest:**@127.0.0.1 stay readable.
_EMAILS = re.compile(
    r"(?:\"[^\"\r\n]{1,64}\"|(?:\\.|[\w.!#$&'*+/=?^`{|}~-])+)(?:@|%40)"
    r"(?:[\w-]+\.)+[A-Za-z]{2,}(?![\w-])"
)

# Digit groups shaped like a phone number: international (+49 30 1234567), a bracketed or
# 0-led area code ((555) 123-4567, 030-1234567, 06 12 34 56 78) or the North American
# 555-123-4567. Order numbers (000000123, 000000123-1), dates, times, amounts, addresses and
# ids are not: a 0-led group is at most five digits and must be followed by another group.
_PHONES = re.compile(
    r"(?<![\w+./-])"
    r"(?:\+\d{1,3}[ .-]?(?:\(\d{1,5}\)|\d{1,5})(?:[ .-]?\d{2,8}){0,5}"
    r"|\(\d{2,5}\)[ .-]?\d{2,8}(?:[ .-]\d{2,8}){0,4}"
    r"|0\d{1,4}(?:[ .-]\d{2,8}){1,5}"
    r"|\d{3}[ .-]\d{3}[ .-]\d{4})"
    r"(?![\w/-]|[.,]\d)"
)

# Keys of a Magento order (webhook, REST or Adobe I/O Events shape, at any depth) whose values
# identify the buyer.
BUYER_KEYS = frozenset(
    {
        "customer_email",
        "email",
        "customer_firstname",
        "customer_middlename",
        "customer_lastname",
        "firstname",
        "middlename",
        "lastname",
        "street",
        "telephone",
        "fax",
    }
)
MIN_VALUE_LENGTH = 3  # shorter values (initials) would blank out ordinary words
_MAX_DEPTH = 32


class _Known:
    """The buyer values of the order being handled, and the patterns that match them."""

    def __init__(self):
        self.values = set()
        self._pattern = None
        self._heads = None
        self._patterns = {}  # forms -> their pattern, for lines naming some of the values

    def add(self, value):
        value = value.strip()
        if len(value) < MIN_VALUE_LENGTH or value in self.values:
            return
        self.values.add(value)
        self._pattern = self._heads = None

    def pattern(self):
        """One pattern matching any written form of any value (longest first)."""
        if self._pattern is None and self.values:
            self._pattern = _alternation(self._forms())
        return self._pattern

    def pattern_for(self, text):
        """A pattern that masks in ``text`` what ``pattern()`` would, or None when no value
        can be in it.

        A batch's thread knows hundreds of buyers: their one pattern takes a tenth of a second
        to compile and tries each of them at every position of a line, while most lines name
        none of them. A value matches only between non-word characters, so each of its words,
        as an ASCII line lowered would hold it, is a whole word of such a line: the forms whose
        words the line holds are the only ones that can match in it, and a pattern of those
        alone (compiled once per block) masks the same. Lines that are not ASCII (where
        case-insensitive matching goes beyond lowering) and values without a word take the
        whole pattern.
        """
        if self._heads is None:
            self._heads = _heads(self._forms())
        if self._heads is False or not text.isascii():
            return self.pattern()
        words = set(_WORD.findall(text.lower()))
        forms = frozenset(
            form
            for head in words & self._heads.keys()
            for needed, form in self._heads[head]
            if needed <= words
        )
        if not forms:
            return None
        pattern = self._patterns.get(forms)
        if pattern is None:
            pattern = self._patterns[forms] = _alternation(forms)
        return pattern

    def _forms(self):
        return {form for value in self.values for form in _written_forms(value)}


_WORD = re.compile(r"\w+")


def _alternation(forms):
    """The case-insensitive pattern matching any of ``forms`` as a whole word, the longest
    first."""
    ordered = sorted(forms, key=lambda form: (-len(form), form))
    alternatives = "|".join(re.escape(form) for form in ordered)
    return re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)", re.IGNORECASE)


def _heads(forms):
    """``{word: [(words, form)]}``: the words of each form as an ASCII line lowered would hold
    them, under its most telling one (letters before digits, then the longest); False when a
    form has no word. A form with a character that matches no ASCII one case-insensitively
    (``ü``, ``ß``) is never in an ASCII line, and is left out."""
    heads = {}
    for form in forms:
        twin = _ascii_twin(form)
        if twin is None:
            continue
        words = set(_WORD.findall(twin))
        if not words:
            return False
        head = max(sorted(words), key=lambda word: (not word.isdigit(), len(word)))
        heads.setdefault(head, []).append((frozenset(words), form))
    return heads


def _ascii_twin(text):
    """``text`` as it may appear in an ASCII line, lowered; None if it cannot appear in one."""
    twins = [_ascii_char(char) for char in text]
    return None if None in twins else "".join(twins)


@functools.lru_cache(maxsize=4096)
def _ascii_char(char):
    """The lowered ASCII character ``char`` matches case-insensitively, as ``re`` matches
    (the long s matches s, the dotless i and the dotted capital I match i, the Kelvin sign
    k), or None (``ü``, and ``ß``: ``re`` folds no character into two)."""
    if char.isascii():
        return char.lower()
    pattern = re.compile(re.escape(char), re.IGNORECASE)
    matches = {chr(code).lower() for code in range(128) if pattern.fullmatch(chr(code))}
    return matches.pop() if len(matches) == 1 else None


def _written_forms(value):
    """``value`` as it may appear in a log line, a URL, a SOQL literal or a JSON string."""
    soql = value.replace("\\", "\\\\").replace("'", "\\'")
    return {value, quote(value, safe=""), quote_plus(value), soql, json.dumps(value)[1:-1]}


_known = contextvars.ContextVar("magsync_known_buyer_values", default=None)


@contextlib.contextmanager
def buyer(order=None):
    """Within the block (one order's handling), redact ``order``'s buyer data by value too.

    ``order`` is a Magento order dict (or an event holding one); more can be added with
    ``remember``. The values are forgotten when the block ends.
    """
    token = _known.set(_Known())
    try:
        remember(order)
        yield
    finally:
        _known.reset(token)


def remember(order):
    """Add the buyer values found in ``order`` to those redacted in the current ``buyer`` block.

    Outside a block this does nothing: values are only ever known for one order's handling.
    """
    known = _known.get()
    if known is None or not isinstance(order, (dict, list)):
        return
    stack = [(order, 0)]
    while stack:
        node, depth = stack.pop()
        if depth > _MAX_DEPTH:
            continue
        items = node.items() if isinstance(node, dict) else enumerate(node)
        for key, value in items:
            if isinstance(value, (dict, list, tuple)):
                stack.append((value, depth + 1))
                if key in BUYER_KEYS and isinstance(value, (list, tuple)):
                    for line in value:
                        if isinstance(line, str):
                            known.add(line)
            elif key in BUYER_KEYS and isinstance(value, str):
                known.add(value)


def _phone(match):
    digits = sum(c.isdigit() for c in match.group())
    return PHONE if 7 <= digits <= 15 else match.group()


def redact(text):
    """``text`` with secrets, the current order's buyer values, emails and phones masked.

    Anything that is not a string is returned as it is.
    """
    if not isinstance(text, str) or not text:
        return text
    lowered = text.lower()
    if any(hint in lowered for hint in _SECRET_HINTS):  # the patterns cost more than the look
        text = _SECRETS.sub(FILTERED, text)
    text = mask_url(text, mask=FILTERED)
    known = _known.get()
    if known is not None and known.values:
        pattern = known.pattern_for(text)
        if pattern is not None:
            text = pattern.sub(REDACTED, text)
    if "@" in text or "%40" in text:
        text = _EMAILS.sub(EMAIL, text)
    return _PHONES.sub(_phone, text)


def redact_data(data, _depth=0):
    """``data`` (dicts, lists, tuples and strings, nested) with every string ``redact``-ed.

    Dicts and lists are changed in place (a Sentry event is one); the result is also returned.
    """
    if isinstance(data, str):
        return redact(data)
    if _depth > _MAX_DEPTH:
        return data
    if isinstance(data, dict):
        for key in list(data):
            value = redact_data(data[key], _depth + 1)
            new_key = redact(key)
            if new_key != key:
                del data[key]
            data[new_key] = value
        return data
    if isinstance(data, list):
        data[:] = [redact_data(item, _depth + 1) for item in data]
        return data
    if isinstance(data, tuple):
        return tuple(redact_data(item, _depth + 1) for item in data)
    return data
