"""Salesforce: OAuth tokens (``auth``) and writing records (``writer``)."""
