"""What the outbound schemas share: the buyer's names and company, the billing address, money,
text limits, and the currency."""

import re
from decimal import ROUND_HALF_UP, Decimal

TEXT_LIMITS = {
    "name": 255,
    "first_name": 40,
    "last_name": 80,
    "phone": 40,
    "street": 255,
    "city": 40,
    "state": 80,
    "postal_code": 20,
    "country": 80,
}


def truncate(text, limit):
    """``text`` cut to ``limit`` characters (the last one an ellipsis); None stays None."""
    if text is None or len(text) <= limit:
        return text
    return text[: limit - 1] + "…"


def limited(kind, text):
    return truncate(text, TEXT_LIMITS[kind])


# What a Salesforce Email field holds: up to 80 characters, an unquoted local part of these
# characters and a dotted domain. Mail servers also accept a quoted local part ("Jane Doe"@...),
# which Salesforce refuses (INVALID_EMAIL_ADDRESS); such an address is left out of Email fields
# rather than failing the whole order.
EMAIL_LIMIT = 80
_STORABLE_EMAIL = re.compile(
    r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+"
    r"@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+"
)


def storable_email(email):
    """``email`` when a Salesforce Email field can hold it, else None."""
    if email and len(email) <= EMAIL_LIMIT and _STORABLE_EMAIL.fullmatch(email):
        return email
    return None


def unstorable_email_note(order):
    """A line keeping an email Salesforce cannot hold in an Email field, else None."""
    if storable_email(order.customer_email):
        return None
    return f"Magento customer email: {order.customer_email}"


def customer_key(email):
    """The ledger's and the lookup's key for a buyer: the email, trimmed and lower-cased.

    Salesforce compares text case-insensitively in SOQL, so one key covers every spelling.
    """
    return email.strip().lower()


def buyer_names(order):
    """``(first, last)``: the customer's names, or the billing address's (guests have no others)."""
    if order.customer_firstname or order.customer_lastname:
        return order.customer_firstname, order.customer_lastname
    address = order.billing_address
    if address is not None:
        return address.firstname, address.lastname
    return None, None


def last_name(order):
    """A LastName for a Contact or Lead (required there): the last name, else the first name,
    else the part of the email before the ``@``."""
    first, last = buyer_names(order)
    return limited("last_name", (last or first or order.customer_email.split("@")[0]).strip())


def first_name(order):
    first, last = buyer_names(order)
    return limited("first_name", first) if last else None


def company(order, fallback):
    """The billing address's company, else ``fallback``, cut to a name's length."""
    address = order.billing_address
    named = address.company.strip() if address and address.company else None
    return limited("name", named or fallback)


# The parts of the billing address, each as the canonical address holds it.
_ADDRESS_PARTS = {
    "street": lambda address: "\n".join(address.street) if address.street else None,
    "city": lambda address: address.city,
    "state": lambda address: address.region,
    "postal_code": lambda address: address.postcode,
    "country": lambda address: address.country_id,
    "phone": lambda address: address.telephone,
}


def address_fields(order, names):
    """The billing address under the field names ``names`` gives for its parts (``street``,
    ``city``, ``state``, ``postal_code``, ``country``, ``phone``), each cut to the length of
    Salesforce's own address fields (a city longer than 40 characters must not cost the order a
    STRING_TOO_LONG). A part the order lacks is None (an upsert then clears the field)."""
    address = order.billing_address
    return {
        name: limited(kind, _ADDRESS_PARTS[kind](address)) if address else None
        for kind, name in names.items()
    }


CENTS = Decimal("0.01")


def money(amount):
    """An amount to the cent, half up (``Decimal`` end to end: never float arithmetic)."""
    return amount.quantize(CENTS, rounding=ROUND_HALF_UP)


def currency_fields(order, settings):
    """``CurrencyIsoCode`` for multi-currency orgs (``SALESFORCE_MULTI_CURRENCY``), else none."""
    if settings.sf_multi_currency and order.order_currency_code:
        return {"CurrencyIsoCode": order.order_currency_code.upper()}
    return {}


def without_empty(fields):
    return {key: value for key, value in fields.items() if value not in (None, "")}
