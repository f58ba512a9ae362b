"""Where orders go: Salesforce."""
