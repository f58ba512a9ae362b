"""The Salesforce checks: a token, the API version, the fields the mapping writes, and the org's
daily API usage against magsync's pacing thresholds.

They share one ``Org`` client: the process's ``TokenProvider`` (so the check obtains a token
exactly as a worker does) and the workers' own request path (``RestClient``) for the GETs of
``/services/data/`` and of each object's describe.
"""

from magsync.check import mapping
from magsync.check.report import Finding
from magsync.errors import AuthenticationFailed, SyncError
from magsync.salesforce.auth import TokenProvider, explain, grant_for
from magsync.salesforce.pacing import ApiUsage
from magsync.salesforce.rest import RestClient, build_session
from magsync.settings import ConfigError


class Unanswered(Exception):
    """Salesforce did not give a usable answer; the message says what happened, plainly."""

    def __init__(self, message, status=None):
        super().__init__(message)
        self.status = status


class Org:
    """Authenticated reads from the org, for the checks (one token, refreshed on a 401, as the
    workers' writes are)."""

    def __init__(self, settings):
        self.settings = settings
        self.session = build_session(settings)
        self.tokens = None
        self.rest = None
        self._describes = {}

    def close(self):
        self.session.close()

    def connect(self):
        """The token, from the grant the settings configure (``AuthenticationFailed``)."""
        self.tokens = TokenProvider(self.settings, self.session, grant_for(self.settings))
        self.rest = RestClient(self.settings, self.tokens, self.session)
        return self.tokens.current()

    def get(self, path):
        """JSON of ``GET <instance><path>``; ``Unanswered`` on anything but 200."""
        try:
            return self.rest.call("GET", path)
        except SyncError as exc:
            if exc.status is None:  # no answer at all: a timeout or a connection failure
                raise Unanswered(f"{path} did not answer ({exc})") from None
            first = next(iter(exc.errors), {})
            said = f"{first.get('errorCode')}: {first.get('message')}"
            if first.get("errorCode") is None:
                said = first.get("message") or ""
            raise Unanswered(f"{path} answered {exc.status} ({said})", exc.status) from None

    def describe(self, sobject):
        if sobject not in self._describes:
            self._describes[sobject] = self.get(self.rest.data_path(f"sobjects/{sobject}/describe"))
        return self._describes[sobject]


def check_token(ctx):
    settings = ctx.settings
    try:
        grant_for(settings)
    except ConfigError:
        yield Finding.skip("token", "the Salesforce credentials are incomplete (see Settings)")
        return
    org = ctx.resource("org", lambda: Org(settings))
    try:
        token = org.connect()
    except ConfigError as exc:
        yield Finding.skip("token", f"{exc} (see Settings)")
        return
    except AuthenticationFailed as exc:
        cause, fix = explain(exc)
        said = next(iter(exc.errors), {}).get("message") or ""
        yield Finding.fail(
            f"{org.tokens.grant.name} grant",
            f"{cause} (Salesforce said: {exc.reason}{': ' + said if said else ''})",
            fix,
        )
        return
    ctx.provide("salesforce")
    yield Finding.ok(
        f"{org.tokens.grant.name} grant",
        f"token obtained from {settings.sf_login_url}; instance {token.instance_url}",
    )


def check_api_version(ctx):
    org, wanted = ctx.resources["org"], ctx.settings.sf_api_version
    try:
        offered = [entry["version"] for entry in org.get("/services/data/")]
    except Unanswered as exc:
        yield Finding.fail(
            "GET /services/data/", str(exc), "check that SALESFORCE_LOGIN_URL is the org's"
        )
        return
    newest = max(offered, key=lambda v: float(v)) if offered else "none"
    if wanted in offered:
        ctx.provide("salesforce_api")
        yield Finding.ok(f"API version {wanted}", f"offered by the org (newest: {newest})")
        return
    offers = f"it offers {offered[0]} to {newest}" if offered else "it lists none"
    yield Finding.fail(
        f"API version {wanted}",
        f"the org does not offer it; {offers}",
        f"set SALESFORCE_API_VERSION to a version the org offers, such as {newest}",
    )


def check_fields(ctx):
    org, settings = ctx.resources["org"], ctx.settings
    for target in mapping.targets(settings):
        if not target.enabled:
            yield Finding.skip(target.label, "not written with these settings")
            continue
        if target.problem:
            yield from mapping.field_findings(target, None)
            continue
        try:
            describe = org.describe(target.sobject)
        except Unanswered as exc:
            if exc.status == 404:
                yield Finding.fail(
                    target.label,
                    f"the org has no {target.sobject} object the integration user can see",
                    f"give the user's profile or permission set access to {target.sobject}",
                )
            else:
                yield Finding.fail(target.label, f"describe failed: {exc}", "run the check again")
            continue
        yield from mapping.field_findings(target, describe)


def _daily_usage(org):
    """``(ApiUsage, where it came from)``: ``GET /limits``, else the last answer's header."""
    try:
        daily = org.get(org.rest.data_path("limits"))["DailyApiRequests"]
        return ApiUsage(daily["Max"] - daily["Remaining"], daily["Max"]), "GET /limits"
    except (Unanswered, KeyError, TypeError):
        # /limits needs the "View Setup and Configuration" permission; every answer reports
        # the usage anyway.
        usage = ApiUsage.parse(org.rest.last_api_usage)
        return usage, "the last answer's Sforce-Limit-Info"


def check_api_usage(ctx):
    org, settings = ctx.resources["org"], ctx.settings
    usage, source = _daily_usage(org)
    thresholds = (
        f"MAGSYNC_API_BUDGET {settings.api_budget:.0%} (backfill and reconciliation pause above "
        f"it), MAGSYNC_API_HALT {settings.api_halt:.0%} (live orders wait above it)"
    )
    if usage is None:
        yield Finding.warn(
            "daily API requests",
            f"the org reported no usage; {thresholds}",
            "give the integration user the View Setup and Configuration permission (GET /limits)",
        )
        return
    figure = (
        f"{usage.used:,} of {usage.limit:,} used in the last 24 hours ({usage.fraction:.0%}, "
        f"from {source}); {thresholds}"
    )
    if usage.fraction < settings.api_budget:
        yield Finding.ok("daily API requests", figure)
        return
    paused = "live orders wait" if usage.fraction >= settings.api_halt else "backfill waits"
    yield Finding.warn(
        "daily API requests",
        f"{figure}: {paused} until usage falls",
        "usage is counted over a rolling 24 hours and falls by itself; find what else spends the "
        "org's allowance (Setup > System Overview), or have Salesforce raise it",
    )
