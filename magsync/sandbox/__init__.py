"""Local, wire-faithful stand-ins for Salesforce and Magento (tests, demo, benchmarks)."""
