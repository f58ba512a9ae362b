"""marshmallow at the boundary: Magento orders in (``order``), every Salesforce field out.

``records`` says how an outbound schema declares where its fields go, and holds the writes it
produces; ``opportunity``, ``lead`` and ``customer`` (Account, Contact, contact role) map an order
to them; ``edits`` says what an admin edit writes; ``common`` holds what they share (names,
company, address, money, limits).
"""
