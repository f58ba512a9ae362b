"""What the outbound schemas share: the buyer's names, text limits, and per-order extras."""

import re

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


def address_fields(order, names):
    """The billing address under the field names ``names`` gives for street, city, state,
    postal code and country (and phone)."""
    address = order.billing_address
    if address is None:
        return {}
    values = {
        "street": "\n".join(address.street) if address.street else None,
        "city": address.city,
        "state": address.region,
        "postal_code": address.postcode,
        "country": address.country_id,
        "phone": address.telephone,
    }
    return {names[kind]: limited(kind, value) for kind, value in values.items() if kind in names}


def order_extras(order, settings):
    """Fields every order record carries when they apply: the currency (multi-currency orgs)
    and, for an edited order, the order it replaces."""
    extras = {}
    if settings.sf_multi_currency and order.order_currency_code:
        extras["CurrencyIsoCode"] = order.order_currency_code.upper()
    if order.parent_increment_id:
        extras[settings.sf_parent_order_field] = order.parent_increment_id
    return extras


def without_empty(fields):
    return {key: value for key, value in fields.items() if value not in (None, "")}
