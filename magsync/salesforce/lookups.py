"""The SOQL lookups of the pipeline, every value an escaped literal.

One order's lookups (``find_contact``, ``find_contact_role``) are one API call each; a batch's
(``find_contacts``, ``find_contact_roles``) one query per chunk of values (``soql.in_chunks``),
and one call per page of 2,000 records. Field names come from validated settings
(``_sf_field_name``), values only through ``soql.literal``: nothing from an order reaches a query
unescaped.
"""

from magsync.salesforce.soql import in_chunks, literal

# A buyer may have several Contacts (entered by hand, imported); the oldest with an Account wins.
CONTACT_CANDIDATES = 10


def find_contact(writer, email):
    """``(contact_id, account_id or None)`` of the buyer's Contact by email, or None.

    Salesforce compares text case-insensitively, so any spelling of the address matches.
    """
    where = f"Email = {literal(email)}"
    soql = f"SELECT Id, AccountId FROM Contact WHERE {where} ORDER BY CreatedDate ASC"  # noqa: S608
    records = writer.query(f"{soql} LIMIT {CONTACT_CANDIDATES}")
    if not records:
        return None
    chosen = _best(records)
    return chosen["Id"], chosen.get("AccountId")


# The buyers of a batch; ``{}`` takes the email literals.
CONTACTS_BY_EMAIL = (
    "SELECT Id, AccountId, Email FROM Contact WHERE Email IN ({}) ORDER BY CreatedDate ASC"
)


def _best(records):
    return next((r for r in records if r.get("AccountId")), records[0])


def find_contacts(writer, emails, **limits):
    """``{email: (contact_id, account_id or None)}`` for each of ``emails`` (lower-cased) that a
    Contact carries, chosen as ``find_contact`` chooses; one query per chunk of emails.

    ``limits`` (``max_length``, ``max_encoded``) lower the chunks' size (see ``in_chunks``).
    """
    by_email = {}
    for soql in in_chunks(CONTACTS_BY_EMAIL, sorted(set(emails)), **limits):
        for record in writer.query_all(soql):
            # Salesforce matched case-insensitively: key the answer as the caller keys buyers
            # (trimmed, lower-cased, as ``mapping.common.customer_key`` does).
            email = (record.get("Email") or "").strip().lower()
            by_email.setdefault(email, []).append(record)
    found = {}
    for email in emails:
        records = by_email.get(email)
        if records:
            chosen = _best(records)
            found[email] = (chosen["Id"], chosen.get("AccountId"))
    return found


def find_contact_roles(writer, opportunity_ids, **limits):
    """``{(opportunity_id, contact_id): role_id}`` of the contact roles of the Opportunities
    ``opportunity_ids``; one query per chunk of ids."""
    template = (
        "SELECT Id, OpportunityId, ContactId FROM OpportunityContactRole "
        "WHERE OpportunityId IN ({})"
    )
    roles = {}
    for soql in in_chunks(template, sorted(set(opportunity_ids)), **limits):
        for record in writer.query_all(soql):
            key = (_id15(record.get("OpportunityId")), _id15(record.get("ContactId")))
            roles.setdefault(key, record["Id"])
    return roles


def _id15(record_id):
    """The case-sensitive 15-character form of a Salesforce id (ids come as 15 or 18)."""
    return record_id[:15] if record_id else record_id


def role_of(roles, opportunity_id, contact_id):
    """The id of the role linking ``contact_id`` to ``opportunity_id`` in ``roles`` (as
    ``find_contact_roles`` gives them), or None."""
    return roles.get((_id15(opportunity_id), _id15(contact_id)))


def find_contact_role(writer, external_id_field, order_number, contact_id):
    """The id of the contact role linking ``contact_id`` to the order's Opportunity, or None."""
    where = (
        f"Opportunity.{external_id_field} = {literal(order_number)} "
        f"AND ContactId = {literal(contact_id)}"
    )
    records = writer.query(f"SELECT Id FROM OpportunityContactRole WHERE {where} LIMIT 1")  # noqa: S608
    return records[0]["Id"] if records else None


# -- products (line items) --------------------------------------------------------------------


def find_products(writer, sku_field, skus, **limits):
    """``{sku: [record]}``: the Product2 records carrying each of ``skus`` (matched as
    Salesforce matches text, case-insensitively; keyed by the SKU as asked), oldest first, each
    with ``Id``, ``IsActive`` and ``CreatedDate``; one query per chunk of SKUs."""
    template = (
        f"SELECT Id, {sku_field}, IsActive, CreatedDate FROM Product2 "  # noqa: S608
        f"WHERE {sku_field} IN ({{}}) ORDER BY CreatedDate ASC, Id ASC"
    )
    asked = {sku.lower(): sku for sku in skus}
    found = {}
    for soql in in_chunks(template, sorted(set(skus)), **limits):
        for record in writer.query_all(soql):
            sku = asked.get((record.get(sku_field) or "").lower())
            if sku is not None:
                found.setdefault(sku, []).append(record)
    return found


def find_price_entries(writer, product_ids, multi_currency, **limits):
    """The PricebookEntry records of ``product_ids``: ``Id``, ``Product2Id``, ``Pricebook2Id``,
    ``IsActive``, ``Pricebook2.IsStandard`` and, with multi-currency, ``CurrencyIsoCode``."""
    currency = ", CurrencyIsoCode" if multi_currency else ""
    template = (
        f"SELECT Id, Product2Id, Pricebook2Id, IsActive, Pricebook2.IsStandard{currency} "  # noqa: S608
        "FROM PricebookEntry WHERE Product2Id IN ({})"
    )
    records = []
    for soql in in_chunks(template, sorted(set(product_ids)), **limits):
        records.extend(writer.query_all(soql))
    return records


def standard_pricebook(writer):
    """The id of the org's standard price book, or None (products not enabled)."""
    records = writer.query("SELECT Id FROM Pricebook2 WHERE IsStandard = true LIMIT 1")
    return records[0]["Id"] if records else None


def same_id(one, other):
    """Whether two Salesforce ids (15 or 18 characters) name one record."""
    return bool(one and other) and _id15(one) == _id15(other)


def find_order_lines(writer, external_id_field, order_number, line_field):
    """``{line key: id}`` of the OpportunityLineItems of the order's Opportunity (a line
    without a key, added by hand, is keyed by its id)."""
    where = f"Opportunity.{external_id_field} = {literal(order_number)}"
    soql = f"SELECT Id, {line_field} FROM OpportunityLineItem WHERE {where}"  # noqa: S608
    return {
        record.get(line_field) or record["Id"]: record["Id"] for record in writer.query_all(soql)
    }
