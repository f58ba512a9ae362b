"""The SOQL lookups of the pipeline, each one API call, every value an escaped literal.

Field names come from validated settings (``_sf_field_name``), values only through
``soql.literal``: nothing from an order reaches a query unescaped.
"""

from magsync.salesforce.soql import literal

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
    chosen = next((r for r in records if r.get("AccountId")), records[0])
    return chosen["Id"], chosen.get("AccountId")


def find_contact_role(writer, external_id_field, order_number, contact_id):
    """The id of the contact role linking ``contact_id`` to the order's Opportunity, or None."""
    where = (
        f"Opportunity.{external_id_field} = {literal(order_number)} "
        f"AND ContactId = {literal(contact_id)}"
    )
    records = writer.query(f"SELECT Id FROM OpportunityContactRole WHERE {where} LIMIT 1")  # noqa: S608
    return records[0]["Id"] if records else None
