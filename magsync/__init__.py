"""magsync keeps Salesforce in step with a Magento 2 / Adobe Commerce store in real time."""

__version__ = "0.1.0"
