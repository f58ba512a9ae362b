"""The store's side: what Magento sends and what magsync reads from it.

``signature`` (the seed's ``X-Magento-Signature`` HMAC), ``adobe`` (Adobe I/O Events: RSA
signatures, public keys, recipients, event ids), ``envelopes`` (a webhook body into the
primitives a task carries), ``client`` (REST with OAuth 1.0a) and ``walk`` (the store's orders
in ``updated_at`` order, by keyset pages).
"""
