"""marshmallow at the boundary: Magento orders in (``order``), Salesforce fields out."""
