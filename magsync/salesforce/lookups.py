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
