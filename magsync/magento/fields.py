"""Magento's wire types as marshmallow fields, shared by the receiver and the inbound mapping.

Magento sends the same value in different spellings: ids as JSON numbers (the seed webhook,
REST) or strings (Adobe I/O Events: ``"4711"``), money as numbers or strings with six decimals
(``"32444.000000"``), timestamps in UTC without an offset. Each field accepts exactly the
spellings Magento uses and refuses anything it would have to guess about: a refused value is a
clear 4xx at the receiver (or an ``invalid_order`` dead letter in the worker), never a silent
truncation or a crash further down.
"""

import datetime as dt
import decimal
import re
from decimal import Decimal

from marshmallow import fields

# Magento's entity ids (orders, stores, items) are unsigned 32-bit integers.
MAX_ID = 2**32 - 1
_DIGITS = re.compile(r"[0-9]{1,20}")


class MagentoId(fields.Field):
    """An id: a JSON integer or a string of ASCII digits, within ``minimum..MAX_ID``.

    Refused: fractions (``1.5``, ``"1.5"``), exponents (``"1e3"``), booleans, signs, spaces and
    non-ASCII digits. Adobe I/O Events never retries a 4xx, so every spelling Magento really
    sends must pass, and nothing else may.
    """

    default_error_messages = {
        "invalid": "Not a valid id: a whole number (JSON integer or string of digits).",
        "range": "Id must be between {minimum} and {maximum}.",
    }

    def __init__(self, *, minimum=1, **kwargs):
        super().__init__(**kwargs)
        self.minimum = minimum

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, bool):
            raise self.make_error("invalid")
        if isinstance(value, int):
            number = value
        elif isinstance(value, str) and _DIGITS.fullmatch(value):
            number = int(value)
        else:
            raise self.make_error("invalid")
        if not self.minimum <= number <= MAX_ID:
            raise self.make_error("range", minimum=self.minimum, maximum=MAX_ID)
        return number

    def _serialize(self, value, attr, obj, **kwargs):
        return value


class Money(fields.Field):
    """A decimal amount (JSON number or numeric string) as ``Decimal``, never a float.

    Finite, and smaller in magnitude than ``10 ** integer_digits``: Magento stores amounts as
    ``decimal(20,4)`` (16 integer digits) and quantities as ``decimal(12,4)`` (8), so anything
    larger (``"1e400"``, 30 digits) is not a Magento value and would not survive the mapping's
    rounding.
    """

    default_error_messages = {
        "invalid": "Not a valid amount.",
        "range": "Amount must be smaller than 10^{digits} in magnitude.",
        "negative": "Must not be negative.",
    }

    def __init__(self, *, integer_digits=16, allow_negative=True, **kwargs):
        super().__init__(**kwargs)
        self.integer_digits = integer_digits
        self.allow_negative = allow_negative

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise self.make_error("invalid")
        text = str(value).strip()
        if len(text) > 64:
            raise self.make_error("invalid")
        try:
            amount = Decimal(text)
        except decimal.InvalidOperation as exc:
            raise self.make_error("invalid") from exc
        if not amount.is_finite():
            raise self.make_error("invalid")
        if amount.copy_abs().adjusted() >= self.integer_digits:
            raise self.make_error("range", digits=self.integer_digits)
        if amount < 0 and not self.allow_negative:
            raise self.make_error("negative")
        return amount

    def _serialize(self, value, attr, obj, **kwargs):
        return None if value is None else str(value)


class MagentoDateTime(fields.Field):
    """``YYYY-MM-DD HH:MM:SS`` in UTC (Magento's format), or ISO 8601 with an offset."""

    default_error_messages = {"invalid": "Not a valid Magento timestamp."}

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, str):
            raise self.make_error("invalid")
        text = value.strip().replace("T", " ").removesuffix("Z")
        try:
            parsed = dt.datetime.fromisoformat(text)
        except ValueError as exc:
            raise self.make_error("invalid") from exc
        if parsed.tzinfo is None:
            return parsed.replace(tzinfo=dt.UTC)
        return parsed.astimezone(dt.UTC)

    def _serialize(self, value, attr, obj, **kwargs):
        return None if value is None else value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def too_far_ahead(moment, max_skew_seconds, now=None):
    """True when ``moment`` (aware) lies more than ``max_skew_seconds`` after ``now``.

    An order version from the future would make every later real update look stale.
    """
    now = now or dt.datetime.now(dt.UTC)
    return moment - now > dt.timedelta(seconds=max_skew_seconds)
