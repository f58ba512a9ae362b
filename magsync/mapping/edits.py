"""Admin edits: what an edit writes to Salesforce, in one place.

Editing an order in Magento's admin cancels it and creates ``<number>-1`` (``order.py`` reads
which order an edit replaced: ``Order.parent_increment_id``). In Salesforce:

- the new order's record (Opportunity or Lead) names the order it replaces in
  ``SALESFORCE_PARENT_ORDER_FIELD`` (``replacing_fields``);
- the replaced order's Opportunity is lost: the canceled stage of the stage map and a note
  naming its replacement in ``SALESFORCE_REPLACED_NOTE_FIELD`` (``replaced_fields``). The
  edit's first write sets them (``ReplacedOrderSchema``, an update by Id, in the same Composite
  call), and the replaced order's own later writes keep them (``OpportunitySchema`` given
  ``replaced_by``), whatever order their events arrive in.

Whether an edit still has to close its parent is the pipeline's decision (the ledger knows);
what closing writes is decided here.
"""

from marshmallow import post_dump

from magsync.mapping.records import UPDATE, OutboundSchema


def replacing_fields(order, settings):
    """The fields naming the order ``order`` replaces, when an edit created it."""
    if order.parent_increment_id:
        return {settings.sf_parent_order_field: order.parent_increment_id}
    return {}


def replaced_stage(settings):
    """The stage of an order an edit replaced: the canceled one of the stage map."""
    return settings.sf_stage_map.get("canceled", "Closed Lost")


def replaced_note(replacement):
    return f"Replaced by edited order {replacement}"


def replaced_fields(replacement, settings):
    """The fields of an Opportunity whose order the order ``replacement`` replaced."""
    return {
        "StageName": replaced_stage(settings),
        settings.sf_replaced_note_field: replaced_note(replacement),
    }


class ReplacedOrderSchema(OutboundSchema):
    """Dumps an edited order as the update closing the Opportunity of the order it replaced."""

    class Meta:
        salesforce_object = "Opportunity"
        salesforce_write = UPDATE

    @post_dump(pass_original=True)
    def add_note(self, data, order, **kwargs):
        data.update(replaced_fields(order.increment_id, self.settings))
        return data


def closing_update(order, parent_record_id, settings):
    """The ``Update`` setting the replaced order's Opportunity ``parent_record_id`` to lost, with
    the note naming ``order``, the edit that replaced it."""
    return ReplacedOrderSchema.of(settings).update(order, parent_record_id)
