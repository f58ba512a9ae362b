"""Magento's web API error bodies, as one exception type every part of the store raises.

Magento renders a failed REST call as ``{"message": ..., "parameters": ...}`` where ``message``
keeps its ``%name`` / ``%1`` placeholders and ``parameters`` carries their values (a dict for
named placeholders, a list for numbered ones). ``parameters`` is left out when there are none,
and aggregate input errors add ``errors``: a list of ``{"message", "parameters"}``. The HTTP
status follows the exception class: not found 404, authentication and authorization 401, other
input problems 400, anything unexpected 500 with a masked message.
"""

import secrets

ROUTE_NOT_FOUND = "Request does not match any route."
ENTITY_NOT_FOUND = "The entity that was requested doesn't exist. Verify the entity and try again."
NOT_AUTHORIZED = "The consumer isn't authorized to access %resources."
SALES_RESOURCE = "Magento_Sales::actions_view"
FIELD_REQUIRED = '"%fieldName" is required. Enter and try again.'
INPUT_ERRORS = "One or more input exceptions have occurred."


class MagentoError(Exception):
    """A failure the store answers in Magento's error shape.

    ``status`` is the HTTP status; :meth:`body` is the JSON document Magento would send.
    """

    def __init__(self, status, message, parameters=None, errors=None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.parameters = parameters
        self.errors = errors

    def body(self):
        body = {"message": self.message}
        if self.errors:
            body["errors"] = self.errors
        if self.parameters:
            body["parameters"] = self.parameters
        return body


def not_found():
    """404 for an order id that does not exist."""
    return MagentoError(404, ENTITY_NOT_FOUND)


def no_route():
    """404 for a path (or method) Magento has no web API route for."""
    return MagentoError(404, ROUTE_NOT_FOUND)


def not_authorized(resource=SALES_RESOURCE):
    """401 for a request without a usable integration identity (no OAuth, or a bearer token)."""
    return MagentoError(401, NOT_AUTHORIZED, {"resources": resource})


def required_fields(names):
    """400 for missing input fields, aggregated the way Magento's InputException does it.

    One missing field becomes the message itself; several become ``errors`` under the generic
    message.
    """
    phrases = [{"message": FIELD_REQUIRED, "parameters": {"fieldName": name}} for name in names]
    if len(phrases) == 1:
        return MagentoError(400, FIELD_REQUIRED, phrases[0]["parameters"])
    return MagentoError(400, INPUT_ERRORS, errors=phrases)


def internal_error():
    """500 with the masked message Magento gives for unexpected exceptions in production mode."""
    report = "webapi-" + secrets.token_hex(6)
    return MagentoError(
        500, f"Internal Error. Details are available in Magento log file. Report ID: {report}"
    )
