"""The control API (``/_sandbox/...`` on the org's own server, no session needed) and a client
for it, so that other processes can drive an org started as ``magsync sandbox salesforce``.

Routes (JSON in and out; errors are ``{"error": "..."}`` with 400 or 404):

====== ===================================== ================================================
GET    /_sandbox/settings                    the ``KEY=value`` settings as an object
GET    /_sandbox/stats                       counters (``SandboxOrg.stats``)
POST   /_sandbox/stats/reset                 counters back to zero, records and faults stay
POST   /_sandbox/reset                       records, counters, faults, limits back to the start
GET    /_sandbox/records/{sobject}           the object's records as stored
POST   /_sandbox/records/{sobject}           ``{"records": [...]}`` created with validation,
                                             not counted; answers ``{"ids": [...]}``
GET    /_sandbox/faults                      the fault rules
POST   /_sandbox/faults                      add a rule (or ``{"rules": [...]}``); answers
                                             the rule(s) with their ids
DELETE /_sandbox/faults                      remove every rule
DELETE /_sandbox/faults/{id}                 remove one rule
POST   /_sandbox/latency                     ``{"latency_ms": X, "jitter_ms": Y}``
POST   /_sandbox/tokens/expire               expire every access token: ``{"expired": n}``
POST   /_sandbox/tokens                      ``{"access_token": ...}`` without a token request
POST   /_sandbox/refresh-tokens              ``{"refresh_token": ...}`` for the refresh grant
POST   /_sandbox/token-ttl                   ``{"seconds": S}``
POST   /_sandbox/limits                      ``{"daily_limit"?, "max_in_flight"?, "api_usage"?}``
POST   /_sandbox/bulk                        ``{"latency"?, "daily_batches"?, "daily_records"?}``
GET    /_sandbox/bulk/jobs                   every Bulk API 2.0 ingest job's info
POST   /_sandbox/users/{username}/revoke     JWT and refresh grants fail with invalid_grant
POST   /_sandbox/users/{username}/restore    ... until restored
====== ===================================== ================================================
"""

import json
from urllib.parse import quote, unquote

import requests

from magsync.sandbox.salesforce.errors import SalesforceError
from magsync.sandbox.salesforce.faults import FaultError


class ControlError(Exception):
    """The control API refused a request."""


def _json_body(body):
    if not body:
        return {}
    data = json.loads(body.decode("utf-8"))
    if not isinstance(data, dict):
        raise ValueError("expected a JSON object")
    return data


def _records_get(org, body, sobject):
    return org.records(sobject)


def _records_post(org, body, sobject):
    return {"ids": org.insert(sobject, body.get("records") or [])}


def _faults_post(org, body):
    if "rules" in body:
        return [org.add_fault(rule) for rule in body["rules"]]
    return org.add_fault(body)


def _faults_delete_one(org, body, rule_id):
    if not org.remove_fault(rule_id):
        raise KeyError(rule_id)
    return {"removed": rule_id}


def _required(body, key):
    if body.get(key) is None:
        raise ValueError(f"{key} is required")
    return body[key]


def _limits(org, body):
    return org.set_limits(body.get("daily_limit"), body.get("max_in_flight"), body.get("api_usage"))


def _bulk(org, body):
    return org.set_bulk(body.get("latency"), body.get("daily_batches"), body.get("daily_records"))


ROUTES = {
    ("GET", ("settings",)): lambda org, body: org.settings(),
    ("GET", ("stats",)): lambda org, body: org.stats(),
    ("POST", ("reset",)): lambda org, body: org.reset() or {"reset": True},
    ("POST", ("stats", "reset")): lambda org, body: org.reset_stats() or {"reset": True},
    ("GET", ("records", "*")): _records_get,
    ("POST", ("records", "*")): _records_post,
    ("GET", ("faults",)): lambda org, body: org.fault_rules(),
    ("POST", ("faults",)): _faults_post,
    ("DELETE", ("faults",)): lambda org, body: org.clear_faults() or {"cleared": True},
    ("DELETE", ("faults", "*")): _faults_delete_one,
    ("POST", ("latency",)): lambda org, body: org.set_latency(
        body.get("latency_ms", 0.0), body.get("jitter_ms", 0.0)
    ),
    ("POST", ("tokens", "expire")): lambda org, body: {"expired": org.expire_tokens()},
    ("POST", ("tokens",)): lambda org, body: {"access_token": org.issue_access_token()},
    ("POST", ("refresh-tokens",)): lambda org, body: {"refresh_token": org.issue_refresh_token()},
    ("POST", ("token-ttl",)): lambda org, body: org.set_token_ttl(_required(body, "seconds")),
    ("POST", ("limits",)): _limits,
    ("POST", ("bulk",)): _bulk,
    ("GET", ("bulk", "jobs")): lambda org, body: org.bulk_jobs(),
    ("POST", ("users", "*", "revoke")): lambda org, body, user: (
        org.revoke_user(user) or {"revoked": user}
    ),
    ("POST", ("users", "*", "restore")): lambda org, body, user: (
        org.restore_user(user) or {"restored": user}
    ),
}


def handle(org, method, path, query, body):
    """``(status, JSON body)`` for a control request."""
    segments = [unquote(part) for part in path.strip("/").split("/")[1:]]
    for (route_method, shape), handler in ROUTES.items():
        if route_method != method or len(shape) != len(segments):
            continue
        if all(part in ("*", seg) for part, seg in zip(shape, segments, strict=True)):
            args = [seg for part, seg in zip(shape, segments, strict=True) if part == "*"]
            try:
                return 200, handler(org, _json_body(body), *args)
            except KeyError as exc:
                return 404, {"error": f"unknown: {exc.args[0]}"}
            except SalesforceError as exc:
                return 400, {"error": str(exc), "errors": exc.body()}
            except (FaultError, ValueError, TypeError) as exc:
                return 400, {"error": str(exc)}
    return 404, {"error": f"no control route {method} {path}"}


class ControlClient:
    """Drive a running sandbox org from another process: the same methods as ``SandboxOrg``.

    ``url`` is the org's URL (``SALESFORCE_LOGIN_URL``), ``ca_path`` its ``ca.pem``.
    """

    def __init__(self, url, ca_path, timeout=10.0):
        self.url = url.rstrip("/")
        self.timeout = timeout
        self._session = requests.Session()
        self._session.verify = str(ca_path)
        # requests lets REQUESTS_CA_BUNDLE in the environment override Session.verify.
        self._session.trust_env = False

    def close(self):
        self._session.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def _call(self, method, path, body=None):
        response = self._session.request(
            method, f"{self.url}/_sandbox/{path}", json=body, timeout=self.timeout
        )
        data = response.json()
        if response.status_code != 200:
            raise ControlError(
                f"{method} /_sandbox/{path}: {response.status_code} {data.get('error')}"
            )
        return data

    def settings(self):
        return self._call("GET", "settings")

    def stats(self):
        return self._call("GET", "stats")

    def reset(self):
        self._call("POST", "reset")

    def reset_stats(self):
        self._call("POST", "stats/reset")

    def records(self, sobject):
        return self._call("GET", f"records/{quote(sobject)}")

    def insert(self, sobject, records):
        return self._call("POST", f"records/{quote(sobject)}", {"records": list(records)})["ids"]

    def fault_rules(self):
        return self._call("GET", "faults")

    def add_fault(self, spec=None, **fields):
        return self._call("POST", "faults", {**(spec or {}), **fields})

    def remove_fault(self, rule_id):
        try:
            self._call("DELETE", f"faults/{quote(rule_id)}")
        except ControlError:
            return False
        return True

    def clear_faults(self):
        self._call("DELETE", "faults")

    def set_latency(self, latency_ms, jitter_ms=0.0):
        return self._call("POST", "latency", {"latency_ms": latency_ms, "jitter_ms": jitter_ms})

    def expire_tokens(self):
        return self._call("POST", "tokens/expire")["expired"]

    def issue_access_token(self):
        return self._call("POST", "tokens")["access_token"]

    def issue_refresh_token(self):
        return self._call("POST", "refresh-tokens")["refresh_token"]

    def revoke_user(self, username=None):
        username = username or self.settings()["SALESFORCE_USERNAME"]
        self._call("POST", f"users/{quote(username, safe='')}/revoke")

    def restore_user(self, username=None):
        username = username or self.settings()["SALESFORCE_USERNAME"]
        self._call("POST", f"users/{quote(username, safe='')}/restore")

    def set_limits(self, daily_limit=None, max_in_flight=None, api_usage=None):
        body = {"daily_limit": daily_limit, "max_in_flight": max_in_flight, "api_usage": api_usage}
        return self._call("POST", "limits", {k: v for k, v in body.items() if v is not None})

    def set_token_ttl(self, seconds):
        return self._call("POST", "token-ttl", {"seconds": seconds})

    def set_bulk(self, latency=None, daily_batches=None, daily_records=None):
        body = {"latency": latency, "daily_batches": daily_batches, "daily_records": daily_records}
        return self._call("POST", "bulk", {k: v for k, v in body.items() if v is not None})

    def bulk_jobs(self):
        return self._call("GET", "bulk/jobs")
