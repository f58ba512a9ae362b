"""The org's side: authentication and the REST calls that write orders.

``auth`` (JWT bearer and refresh-token grants, one token per process), ``rest`` (the one path
every request takes, through simple-salesforce, refreshed on 401), ``writer`` (upserts,
Collections and Composite), ``lookups`` and ``soql`` (queries with escaped literals).
"""
