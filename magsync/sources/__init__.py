"""Where orders come from: Magento webhooks (the signal) and the Magento REST API (the truth)."""
