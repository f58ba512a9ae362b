"""Money and quantities: decimal arithmetic inside, Magento's number formats outside.

Amounts are :class:`~decimal.Decimal` rounded half-up to cents while an order is built or
changed, so totals add up exactly. On the REST wire Magento writes them as JSON numbers, whole
values without a fraction (``5``, ``293``) and others as decimals (``322.17``); in model data
(the Adobe I/O Events ``data.value``) they are the database's strings with four decimals
(``"322.1700"``).
"""

from decimal import ROUND_HALF_UP, Decimal

CENT = Decimal("0.01")
ZERO = Decimal("0")


def dec(value):
    """A Decimal from a number, a numeric string or a Decimal (floats go through ``str``)."""
    if isinstance(value, Decimal):
        return value
    return Decimal(str(value))


def money(value):
    """Round to cents, half up."""
    return dec(value).quantize(CENT, ROUND_HALF_UP)


def wire(value):
    """The JSON number Magento's REST output carries for a decimal: int when whole, else float."""
    value = dec(value)
    if value == value.to_integral_value():
        return int(value)
    return float(value)


def db_string(value):
    """The string a DECIMAL(x,4) column holds: ``"322.1700"``."""
    return f"{dec(value):.4f}"


def split(total, weights):
    """Split ``total`` (cents) over ``weights`` proportionally; the parts sum to ``total`` exactly.

    The rounding remainder goes to the largest weight, as a cart rule spreads a fixed discount.
    """
    total = money(total)
    weights = [dec(w) for w in weights]
    whole = sum(weights, ZERO)
    if not weights:
        return []
    if whole == 0:
        parts = [ZERO for _ in weights]
        parts[0] = total
        return parts
    parts = [money(total * w / whole) for w in weights]
    biggest = max(range(len(weights)), key=lambda i: weights[i])
    parts[biggest] += total - sum(parts, ZERO)
    return parts
