"""magsync's settings: every environment variable it reads, declared once with its type.

Settings are read from the environment only (12-factor). ``Settings.from_env()`` parses what is
present and reports every malformed value at once; a secret has no default, and the process that
needs it calls ``settings.require(...)``, which names the missing variables. ``.env.example``
documents each variable.
"""

import dataclasses
import datetime as dt
import ipaddress
import json
import os
import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit


class ConfigError(Exception):
    """A setting is missing or malformed; the message names the variables and how to fix them."""


# A URL's password runs from "scheme://user:" to the last "@" before whitespace: a password may
# hold an unescaped "/" or "@", and masking too much is better than showing part of one.
_URL_PASSWORD = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^:/?#@\s]*:)\S+@")


def mask_url(text, mask="***"):
    """``text`` with the password of every URL in it replaced by ``mask``.

    ``amqp://guest:secret@rabbit//`` becomes ``amqp://guest:***@rabbit//``; works on a bare URL
    (a setting's value) and on URLs inside a message. Anything else is returned unchanged.
    """
    if not isinstance(text, str):
        return text
    return _URL_PASSWORD.sub(lambda match: f"{match.group(1)}{mask}@", text)


# -- parsers: each takes the raw string and returns the typed value or raises ValueError ----------


def _str(raw):
    return raw.strip()


def _int(raw):
    return int(raw.strip())


def _positive_float(raw):
    value = float(raw.strip())
    if value <= 0:
        raise ValueError("must be greater than 0")
    return value


def _batch_size(raw):
    """Orders per coalesced write: 1 (one order per call) to 200 (an sObject Collection)."""
    value = int(raw.strip())
    if not 1 <= value <= MAX_BATCH_SIZE:
        raise ValueError(f"must be from 1 to {MAX_BATCH_SIZE} (an sObject Collection's limit)")
    return value


def _positive_int(raw):
    value = int(raw.strip())
    if value < 1:
        raise ValueError("must be 1 or more")
    return value


def _namespace(raw):
    name = raw.strip()
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,100}", name):
        raise ValueError("must be letters, digits, '.', '_' or '-'")
    return name


def _bool(raw):
    text = raw.strip().lower()
    if text in {"1", "true", "yes", "on"}:
        return True
    if text in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError("must be true or false")


MIN_WEBHOOK_SECRET_BYTES = 16
MIN_FLOWER_PASSWORD_CHARS = 12


def _secret_list(raw):
    """One webhook secret, or several during a rotation: separated by commas, each trimmed.

    Spaces inside a secret are part of it; a secret holding a comma goes into
    ``MAGENTO_WEBHOOK_SECRETS_JSON`` instead.
    """
    secrets = tuple(s.strip() for s in raw.split(",") if s.strip())
    if not secrets:
        raise ValueError("must hold at least one secret")
    return secrets


def _secret_json(raw):
    """Webhook secrets as a JSON array of strings, taken exactly as written (commas and all)."""
    try:
        value = json.loads(raw)
    except ValueError:
        raise ValueError("must be a JSON array of strings") from None
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(s, str) for s in value):
        raise ValueError("must be a JSON array of strings")
    if not all(value):
        raise ValueError("must not hold an empty secret")
    return tuple(value)


def webhook_secret_problem(secrets):
    """Why ``secrets`` cannot sign webhooks (a sentence naming no secret), or None."""
    short = [i for i, s in enumerate(secrets, 1) if len(s.encode()) < MIN_WEBHOOK_SECRET_BYTES]
    if not short:
        return None
    which = ", ".join(str(i) for i in short)
    return (
        f"secret {which} of {len(secrets)} is shorter than {MIN_WEBHOOK_SECRET_BYTES} bytes "
        "(a short secret can be guessed from signed webhooks)"
    )


def flower_auth_problem(auth):
    """Why ``FLOWER_BASIC_AUTH`` does not protect Flower (a sentence naming no password), or None.

    Flower takes ``user:password`` pairs separated by commas; every user must be named and
    every password at least ``MIN_FLOWER_PASSWORD_CHARS`` characters long.
    """
    if not auth:
        return "is not set"
    for number, pair in enumerate(auth.split(","), 1):
        user, sep, password = pair.partition(":")
        if not sep:
            return f"entry {number} is not in the form user:password"
        if not user.strip():
            return f"entry {number} has an empty user name"
        if len(password) < MIN_FLOWER_PASSWORD_CHARS:
            return (
                f"entry {number} has a password shorter than {MIN_FLOWER_PASSWORD_CHARS} characters"
            )
    return None


def _https_url(raw):
    url = raw.strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.netloc:
        raise ValueError("must be an https:// URL")
    return url


def _non_negative_int(raw):
    value = int(raw.strip())
    if value < 0:
        raise ValueError("must be 0 or more")
    return value


def _non_negative_float(raw):
    value = float(raw.strip())
    if value < 0:
        raise ValueError("must be 0 or more")
    return value


def _key_cache_seconds(raw):
    value = int(raw.strip())
    if not 0 < value <= MAX_KEY_CACHE_SECONDS:
        raise ValueError(f"must be between 1 and {MAX_KEY_CACHE_SECONDS} (Adobe allows 24 h)")
    return value


def _key_base_url(raw):
    """Where Adobe's public keys are fetched: HTTPS, or plain HTTP to a loopback address (the
    sandbox store); a bare origin, since only Adobe's own key paths are appended to it."""
    url = raw.strip().rstrip("/")
    parts = urlsplit(url)
    if parts.path or parts.query or parts.fragment or parts.username or not parts.hostname:
        raise ValueError("must be an origin such as https://static.adobeioevents.com (no path)")
    if parts.scheme == "https" or (parts.scheme == "http" and is_loopback(parts.hostname)):
        return url
    raise ValueError("must be an https:// URL (http:// only for a loopback address)")


def _host_list(raw):
    """Host names (``host`` or ``host:port``), separated by commas or whitespace."""
    hosts = tuple(h.lower() for h in re.split(r"[,\s]+", raw) if h)
    for host in hosts:
        if not re.fullmatch(r"[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:\d{1,5})?", host):
            raise ValueError(f"{host!r} is not a host name")
    if not hosts:
        raise ValueError("must name at least one host")
    return hosts


def is_loopback(host):
    """True for ``localhost`` and loopback IP addresses."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _http_url(raw):
    url = raw.strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.netloc:
        raise ValueError("must be an http:// or https:// URL")
    return url


def _api_version(raw):
    match = re.fullmatch(r"v?(\d{2,3}\.\d)", raw.strip())
    if not match:
        raise ValueError("must look like 58.0 or v58.0")
    return match.group(1)


def _sf_field_name(raw):
    name = raw.strip()
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", name):
        raise ValueError("must be a Salesforce field API name such as Magento_Order_ID__c")
    return name


def _pricebook_id(raw):
    """``standard`` (the org's standard price book) or a Pricebook2 id."""
    value = raw.strip()
    if value.lower() == "standard":
        return "standard"
    if not re.fullmatch(r"01s[A-Za-z0-9]{12}(?:[A-Za-z0-9]{3})?", value):
        raise ValueError("must be standard or a Pricebook2 id (15 or 18 characters, 01s...)")
    return value


def _product_name(raw):
    """A product's name and SKU: 1 to 80 characters (Product2.Name holds 255, SKUs fewer)."""
    value = raw.strip()
    if not 1 <= len(value) <= 80:
        raise ValueError("must be 1 to 80 characters")
    return value


def _stage_map(raw):
    """``state=Stage Name;state=Stage Name`` (Magento order state to Opportunity StageName)."""
    mapping = {}
    for pair in filter(None, (p.strip() for p in raw.split(";"))):
        state, sep, stage = pair.partition("=")
        if not sep or not state.strip() or not stage.strip():
            raise ValueError(f"entry {pair!r} must be state=Stage Name")
        mapping[state.strip()] = stage.strip()
    if not mapping:
        raise ValueError("must map at least one state")
    return mapping


@dataclass(frozen=True)
class DateOffset:
    """A calendar offset, ``N days`` or ``N months`` (months clamp to the month's last day)."""

    amount: int
    unit: str

    def apply(self, day: dt.date) -> dt.date:
        if self.unit == "days":
            return day + dt.timedelta(days=self.amount)
        month_index = day.month - 1 + self.amount
        year, month = day.year + month_index // 12, month_index % 12 + 1
        next_month = dt.date(year + month // 12, month % 12 + 1, 1)
        last_day = (next_month - dt.timedelta(days=1)).day
        return dt.date(year, month, min(day.day, last_day))

    def __str__(self):
        return f"{self.amount} {self.unit}"


def _date_offset(raw):
    match = re.fullmatch(r"\s*(\d{1,4})\s*(day|days|month|months)\s*", raw.lower())
    if not match:
        raise ValueError("must look like '1 month' or '30 days'")
    unit = "days" if match.group(2).startswith("day") else "months"
    return DateOffset(int(match.group(1)), unit)


def _rate_limit(raw):
    """Salesforce calls per worker process: ``20/s``, ``600/m``, ``10000/h`` (a bare number is
    per second); kept as written, for messages."""
    text = raw.strip()
    match = re.fullmatch(r"(\d+(\.\d+)?)(/[smh])?", text)
    if not match:
        raise ValueError("must look like 20/s, 600/m or 10000/h")
    if float(match.group(1)) <= 0:
        raise ValueError("must be more than 0 calls")
    return text


def _task_rate_limit(raw):
    """Tasks per worker process as Celery's ``rate_limit`` reads it: ``50/s``, ``600/m``,
    ``10000/h`` (a bare number is per second)."""
    return _rate_limit(raw)


def _fraction(raw):
    """A share of the org's daily API allowance: 0.8, or 80%."""
    text = raw.strip()
    value = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    if not 0 < value <= 1:
        raise ValueError(
            "must be a fraction of the allowance above 0 and at most 1 (or 1% to 100%)"
        )
    return value


def _database_url(raw):
    """A SQLAlchemy URL for the ledger: SQLite or PostgreSQL (psycopg 3).

    Heroku and most hosts hand out ``postgres://`` URLs, which SQLAlchemy no longer accepts; they
    and plain ``postgresql://`` URLs are read as ``postgresql+psycopg://``.
    """
    url = raw.strip()
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ValueError("must be a URL such as sqlite:///var/magsync.db or postgresql://...")
    if scheme in {"postgres", "postgresql", "postgresql+psycopg"}:
        return f"postgresql+psycopg://{rest}"
    if scheme in {"sqlite", "sqlite+pysqlite"}:
        if rest in {"", "/", "/:memory:"}:
            # Each worker process would get a database of its own, lost when it exits.
            raise ValueError("must name a SQLite file (sqlite:///path/to/file.db), not memory")
        return f"sqlite://{rest}"
    raise ValueError("must be a sqlite:/// or postgresql:// URL")


def _page_size(raw):
    """A Magento search page size: Magento refuses more than 300 (its web API input limit)."""
    value = int(raw.strip())
    if not 1 <= value <= 300:
        raise ValueError("must be from 1 to 300")
    return value


def _choice(*allowed):
    def parse(raw):
        value = raw.strip().lower()
        if value not in allowed:
            raise ValueError(f"must be one of {', '.join(allowed)}")
        return value

    return parse


MAX_KEY_CACHE_SECONDS = 86400
MAX_BATCH_SIZE = 200

DEFAULT_STAGE_MAP = (
    "new=Prospecting;pending_payment=Prospecting;processing=Qualification;"
    "complete=Closed Won;closed=Closed Lost;canceled=Closed Lost"
)


# The Magento REST API's settings: with all of them the worker reads each order from the store;
# with none it maps the webhook's payload.
MAGENTO_REST = (
    "magento_base_url",
    "magento_consumer_key",
    "magento_consumer_secret",
    "magento_access_token",
    "magento_access_token_secret",
)


def _setting(env, parse=_str, default=None, secret=False, doc=""):
    return field(
        default=default,
        metadata={"env": env, "parse": parse, "secret": secret, "doc": doc},
    )


@dataclass(frozen=True)
class Settings:
    """Typed settings. Build with ``Settings.from_env()``; tests pass their own mapping."""

    # -- web receiver ---------------------------------------------------------------------------
    webhook_secrets: tuple = _setting(
        "MAGENTO_WEBHOOK_SECRET",
        _secret_list,
        secret=True,
        doc="HMAC secret(s) of the webhook signature; several, comma-separated, during rotation",
    )
    webhook_secrets_json: tuple = _setting(
        "MAGENTO_WEBHOOK_SECRETS_JSON",
        _secret_json,
        secret=True,
        doc="the webhook secret(s) as a JSON array, for secrets that hold a comma",
    )
    max_clock_skew: float = _setting(
        "MAGSYNC_MAX_CLOCK_SKEW",
        _positive_float,
        86400.0,
        doc="seconds an order's updated_at may lie ahead of this host's clock",
    )
    max_body_bytes: int = _setting("MAGSYNC_MAX_BODY_BYTES", _int, 2 * 1024 * 1024)
    # -- Adobe I/O Events intake (POST /adobe/events) -------------------------------------------
    adobe_client_id: str = _setting(
        "ADOBE_IO_CLIENT_ID",
        _str,
        doc="client id of the merchant's I/O project; enables /adobe/events",
    )
    adobe_key_base_url: str = _setting(
        "ADOBE_IO_PUBLIC_KEY_BASE_URL", _key_base_url, "https://static.adobeioevents.com"
    )
    adobe_key_cache_seconds: int = _setting("ADOBE_IO_KEY_CACHE_SECONDS", _key_cache_seconds, 3600)
    adobe_validation_hosts: tuple = _setting(
        "ADOBE_IO_VALIDATION_HOSTS", _host_list, ("csm.adobe.io",)
    )
    adobe_ca_bundle: str = _setting("ADOBE_IO_CA_BUNDLE", _str)
    adobe_timeout: float = _setting("ADOBE_IO_TIMEOUT", _positive_float, 5.0)
    publish_timeout: float = _setting("MAGSYNC_PUBLISH_TIMEOUT", _positive_float, 5.0)
    # -- broker ---------------------------------------------------------------------------------
    broker_url: str = _setting(
        "CELERY_BROKER_URL", _str, "amqp://guest:guest@127.0.0.1:5672//", secret=True
    )
    broker_namespace: str = _setting("MAGSYNC_BROKER_NAMESPACE", _namespace, "magsync")
    delivery_limit: int = _setting("MAGSYNC_DELIVERY_LIMIT", _int, 20)
    broker_folder: str = _setting("MAGSYNC_BROKER_FOLDER", _str, "var/broker")
    worker_concurrency: int = _setting(
        "MAGSYNC_WORKER_CONCURRENCY",
        _int,
        4,
        doc="processes of a worker that does not coalesce (MAGSYNC_BATCH_SIZE=1)",
    )
    worker_threads: int = _setting(
        "MAGSYNC_WORKER_THREADS",
        _positive_int,
        400,
        doc="threads of a coalescing worker: the orders that can wait for a batch at once",
    )
    gc_threshold: int = _setting(
        "MAGSYNC_GC_THRESHOLD",
        _non_negative_int,
        50000,
        doc="allocations between a worker's young garbage collections (0: Python's default)",
    )
    batch_size: int = _setting(
        "MAGSYNC_BATCH_SIZE",
        _batch_size,
        200,
        doc="orders a worker process writes to Salesforce together (1: one order per call)",
    )
    batch_linger_ms: float = _setting(
        "MAGSYNC_BATCH_LINGER_MS",
        _non_negative_float,
        25.0,
        doc="milliseconds a batch waits for more orders after its first",
    )
    batch_timeout: float = _setting(
        "MAGSYNC_BATCH_TIMEOUT",
        _positive_float,
        180.0,
        doc="seconds an order waits for its batch's outcome before it is retried later",
    )
    late_write_window: float = _setting(
        "MAGSYNC_LATE_WRITE_WINDOW",
        _positive_float,
        120.0,
        doc="seconds within which a Salesforce write whose answer never came may still land",
    )
    salesforce_concurrency: int = _setting(
        "MAGSYNC_SALESFORCE_CONCURRENCY",
        _positive_int,
        2,
        doc="Salesforce calls a worker process has in flight at most",
    )
    salesforce_rate_limit: str = _setting("SALESFORCE_RATE_LIMIT", _rate_limit, "20/s")
    retry_for: float = _setting("MAGSYNC_RETRY_FOR", _positive_float, 7200.0)
    retry_backoff: float = _setting("MAGSYNC_RETRY_BACKOFF", _positive_float, 2.0)
    retry_backoff_max: float = _setting("MAGSYNC_RETRY_BACKOFF_MAX", _positive_float, 600.0)
    circuit_threshold: int = _setting("MAGSYNC_CIRCUIT_THRESHOLD", _int, 5)
    circuit_cooldown: float = _setting("MAGSYNC_CIRCUIT_COOLDOWN", _positive_float, 30.0)
    # -- quota-aware pacing (magsync.sync.pacing) -------------------------------------------------
    api_budget: float = _setting(
        "MAGSYNC_API_BUDGET",
        _fraction,
        0.8,
        doc="share of the org's daily API allowance above which backfill and reconciliation pause",
    )
    api_halt: float = _setting(
        "MAGSYNC_API_HALT",
        _fraction,
        0.95,
        doc="share of the allowance above which live orders wait too (at least the budget)",
    )
    api_probe_interval: float = _setting(
        "MAGSYNC_API_PROBE_INTERVAL",
        _positive_float,
        60.0,
        doc="seconds between calls let through to read the usage while work is paused",
    )
    # -- Salesforce -----------------------------------------------------------------------------
    sf_login_url: str = _setting("SALESFORCE_LOGIN_URL", _https_url, "https://login.salesforce.com")
    sf_client_id: str = _setting("SALESFORCE_CLIENT_ID", _str)
    sf_client_secret: str = _setting("SALESFORCE_CLIENT_SECRET", _str, secret=True)
    sf_username: str = _setting("SALESFORCE_USERNAME", _str)
    sf_private_key_path: str = _setting("SALESFORCE_PRIVATE_KEY_PATH", _str)
    sf_private_key: str = _setting("SALESFORCE_PRIVATE_KEY", _str, secret=True)
    sf_refresh_token: str = _setting("SALESFORCE_REFRESH_TOKEN", _str, secret=True)
    sf_audience: str = _setting("SALESFORCE_AUDIENCE", _https_url)
    sf_api_version: str = _setting("SALESFORCE_API_VERSION", _api_version, "58.0")
    sf_ca_bundle: str = _setting("SALESFORCE_CA_BUNDLE", _str)
    sf_timeout: float = _setting("SALESFORCE_TIMEOUT", _positive_float, 30.0)
    sf_token_retry_interval: float = _setting(
        "SALESFORCE_TOKEN_RETRY_INTERVAL",
        _positive_float,
        30.0,
        doc="seconds a worker process waits after a failed token request before asking again",
    )
    # -- mapping --------------------------------------------------------------------------------
    sf_external_id_field: str = _setting(
        "SALESFORCE_EXTERNAL_ID_FIELD", _sf_field_name, "Magento_Order_ID__c"
    )
    sf_lead_source: str = _setting("SALESFORCE_LEAD_SOURCE", _str, "Magento E-commerce")
    sf_stage_map: dict = _setting("SALESFORCE_STAGE_MAP", _stage_map)
    sf_close_date_offset: DateOffset = _setting(
        "SALESFORCE_CLOSE_DATE_OFFSET", _date_offset, DateOffset(1, "months")
    )
    sf_multi_currency: bool = _setting("SALESFORCE_MULTI_CURRENCY", _bool, False)
    sf_parent_order_field: str = _setting(
        "SALESFORCE_PARENT_ORDER_FIELD", _sf_field_name, "Magento_Parent_Order_ID__c"
    )
    sf_replaced_note_field: str = _setting(
        "SALESFORCE_REPLACED_NOTE_FIELD", _sf_field_name, "NextStep"
    )
    # -- line items (the order's products on the Opportunity) ---------------------------------
    sf_line_items: bool = _setting(
        "SALESFORCE_LINE_ITEMS",
        _bool,
        False,
        doc="write the order's items as OpportunityLineItems (with shipping, tax, adjustment)",
    )
    sf_line_external_id_field: str = _setting(
        "SALESFORCE_LINE_EXTERNAL_ID_FIELD", _sf_field_name, "Magento_Item_ID__c"
    )
    sf_product_sku_field: str = _setting(
        "SALESFORCE_PRODUCT_SKU_FIELD", _sf_field_name, "ProductCode"
    )
    sf_pricebook_id: str = _setting("SALESFORCE_PRICEBOOK_ID", _pricebook_id, "standard")
    sf_shipping_product: str = _setting("SALESFORCE_SHIPPING_PRODUCT", _product_name, "Shipping")
    sf_tax_product: str = _setting("SALESFORCE_TAX_PRODUCT", _product_name, "Tax")
    sf_adjustment_product: str = _setting(
        "SALESFORCE_ADJUSTMENT_PRODUCT", _product_name, "Order adjustment"
    )
    sf_refunded_field: str = _setting("SALESFORCE_REFUNDED_FIELD", _sf_field_name)
    bundle_lines: str = _setting("MAGSYNC_BUNDLE_LINES", _choice("parent", "children"), "parent")
    # -- customers and leads --------------------------------------------------------------------
    guest_mode: str = _setting("MAGSYNC_GUEST_MODE", _choice("contact", "lead"), "contact")
    sf_contact_role: str = _setting("SALESFORCE_CONTACT_ROLE", _str, "Decision Maker")
    sf_lead_company: str = _setting("SALESFORCE_LEAD_COMPANY", _str, "[not provided]")
    sf_lead_external_id_field: str = _setting(
        "SALESFORCE_LEAD_EXTERNAL_ID_FIELD", _sf_field_name, "Magento_Order_ID__c"
    )
    # -- sync ledger ----------------------------------------------------------------------------
    database_url: str = _setting(
        "DATABASE_URL", _database_url, "sqlite:///var/magsync.db", secret=True
    )
    lock_timeout: float = _setting("MAGSYNC_LOCK_TIMEOUT", _positive_float, 60.0)
    # -- Magento REST (optional: without it the worker maps the webhook payload) ---------------
    magento_base_url: str = _setting("MAGENTO_BASE_URL", _http_url)
    magento_consumer_key: str = _setting("MAGENTO_CONSUMER_KEY", _str, secret=True)
    magento_consumer_secret: str = _setting("MAGENTO_CONSUMER_SECRET", _str, secret=True)
    magento_access_token: str = _setting("MAGENTO_ACCESS_TOKEN", _str, secret=True)
    magento_access_token_secret: str = _setting("MAGENTO_ACCESS_TOKEN_SECRET", _str, secret=True)
    magento_store_code: str = _setting("MAGENTO_STORE_CODE", _str)
    magento_timeout: float = _setting("MAGENTO_TIMEOUT", _positive_float, 20.0)
    reconcile_interval: float = _setting(
        "MAGSYNC_RECONCILE_INTERVAL",
        _non_negative_float,
        300.0,
        doc="seconds between polls of the store's orders (0: off); the clock process polls",
    )
    reconcile_overlap: float = _setting(
        "MAGSYNC_RECONCILE_OVERLAP",
        _non_negative_float,
        600.0,
        doc="seconds each poll reads again before the last order it saw (clock skew, late commits)",
    )
    reconcile_page_size: int = _setting(
        "MAGSYNC_RECONCILE_PAGE_SIZE",
        _page_size,
        100,
        doc="orders per GET /V1/orders page when magsync reads the store itself (at most 300)",
    )
    # -- backfill (magsync backfill) -------------------------------------------------------------
    bulk_threshold: int = _setting(
        "MAGSYNC_BULK_THRESHOLD",
        _int,
        2000,
        doc="a backfill of more orders than this writes Opportunities with Bulk API 2.0 jobs",
    )
    backfill_rate_limit: str = _setting(
        "MAGSYNC_BACKFILL_RATE_LIMIT",
        _task_rate_limit,
        "50/s",
        doc="backfilled orders a backfill worker process starts at most (Celery rate_limit)",
    )
    # -- operations -----------------------------------------------------------------------------
    sentry_dsn: str = _setting("SENTRY_DSN", _str, secret=True)
    sentry_environment: str = _setting("SENTRY_ENVIRONMENT", _str, "production")
    log_level: str = _setting("LOG_LEVEL", _str, "INFO")
    flower_basic_auth: str = _setting("FLOWER_BASIC_AUTH", _str, secret=True)

    def __post_init__(self):
        if self.sf_stage_map is None:
            object.__setattr__(self, "sf_stage_map", _stage_map(DEFAULT_STAGE_MAP))
        if self.api_halt < self.api_budget:
            raise ConfigError(
                f"invalid settings: MAGSYNC_API_HALT ({self.api_halt:g}) must be at least "
                f"MAGSYNC_API_BUDGET ({self.api_budget:g})"
            )

    @classmethod
    def from_env(cls, environ=None):
        """Parse the settings from ``environ`` (default ``os.environ``).

        Empty values count as unset. Raises ``ConfigError`` listing every malformed variable.
        """
        environ = os.environ if environ is None else environ
        values, problems = {}, []
        for f in dataclasses.fields(cls):
            env = f.metadata["env"]
            raw = environ.get(env)
            if raw is None and env == "CELERY_BROKER_URL":
                # Heroku's RabbitMQ add-ons publish their URL under their own names.
                raw = environ.get("CLOUDAMQP_URL") or environ.get("RABBITMQ_URL")
            if raw is None or not raw.strip():
                continue
            try:
                values[f.name] = f.metadata["parse"](raw)
            except ValueError as exc:
                problems.append(f"{env} {exc}")
        if "webhook_secrets" in values and "webhook_secrets_json" in values:
            problems.append(
                "MAGENTO_WEBHOOK_SECRETS_JSON is set together with MAGENTO_WEBHOOK_SECRET: set one"
            )
        if problems:
            raise ConfigError("invalid settings: " + "; ".join(problems))
        return cls(**values)

    def unset(self, *names):
        """The variables of the listed settings (attribute names) that are unset."""
        return [self.env_name(n) for n in names if getattr(self, n) in (None, "", ())]

    def require(self, *names):
        """Raise ``ConfigError`` naming each listed setting (attribute names) that is unset."""
        missing = self.unset(*names)
        if missing:
            raise ConfigError(
                "missing required settings: "
                + ", ".join(missing)
                + " (set them in the environment; see .env.example)"
            )

    def receiver_secrets(self):
        """The webhook secrets ``/magento/webhook`` accepts (empty: that intake is off).

        Raises ``ConfigError`` when one is shorter than ``MIN_WEBHOOK_SECRET_BYTES``, saying
        which variable (never the secret).
        """
        variable = "MAGENTO_WEBHOOK_SECRETS_JSON" if self.webhook_secrets_json else None
        secrets = self.webhook_secrets_json or self.webhook_secrets or ()
        if not secrets:
            return ()
        problem = webhook_secret_problem(secrets)
        if problem:
            raise ConfigError(
                f"{variable or 'MAGENTO_WEBHOOK_SECRET'}: {problem}; use at least "
                f"{MIN_WEBHOOK_SECRET_BYTES} random bytes, e.g. the output of "
                "`python -c 'import secrets; print(secrets.token_hex(32))'`"
            )
        return secrets

    def require_flower_auth(self):
        """Raise ``ConfigError`` unless ``FLOWER_BASIC_AUTH`` protects Flower."""
        problem = flower_auth_problem(self.flower_basic_auth)
        if problem:
            raise ConfigError(
                f"FLOWER_BASIC_AUTH {problem}: set it to user:password with a named user and a "
                f"password of at least {MIN_FLOWER_PASSWORD_CHARS} characters (Flower is never "
                "served without it)"
            )

    @classmethod
    def env_name(cls, attribute):
        return {f.name: f.metadata["env"] for f in dataclasses.fields(cls)}[attribute]

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)

    # -- derived values ---------------------------------------------------------------------------

    @property
    def magento_rest_enabled(self):
        """True when all of the Magento REST settings are present (the store is the truth)."""
        return not self.unset(*MAGENTO_REST)

    @property
    def coalescing(self):
        """True when a worker writes many orders per call (``MAGSYNC_BATCH_SIZE`` > 1)."""
        return self.batch_size > 1

    @property
    def worker_pool(self):
        """Celery's pool: threads that wait for their batch together, or one order per process."""
        return "threads" if self.coalescing else "prefork"

    @property
    def worker_pool_size(self):
        """Threads of a coalescing worker, else processes."""
        return self.worker_threads if self.coalescing else self.worker_concurrency

    @property
    def reconcile_enabled(self):
        """True when the store can be polled: its REST API is configured and the interval > 0."""
        return self.magento_rest_enabled and self.reconcile_interval > 0

    @property
    def webhook_intake_enabled(self):
        """True when the web process has an intake on (the seed HMAC or Adobe I/O Events)."""
        return bool(self.webhook_secrets or self.webhook_secrets_json or self.adobe_client_id)

    @property
    def store_key(self):
        """The store a reconciliation watermark belongs to: base URL and store code."""
        return f"{self.magento_base_url or ''}|{self.magento_store_code or ''}"

    @property
    def broker_is_rabbitmq(self):
        return urlsplit(self.broker_url).scheme in {"amqp", "amqps", "pyamqp"}

    @property
    def sf_token_audience(self):
        """The JWT ``aud``: the login or test URL, also when the login URL is a My Domain URL."""
        if self.sf_audience:
            return self.sf_audience
        host = urlsplit(self.sf_login_url).hostname or ""
        if host == "test.salesforce.com" or ".sandbox.my.salesforce.com" in host:
            return "https://test.salesforce.com"
        return "https://login.salesforce.com"

    def __repr__(self):
        shown = ", ".join(f"{env}={value!r}" for env, value in self.describe())
        return f"Settings({shown})"

    __str__ = __repr__

    def describe(self):
        """Each setting as ``(ENV_NAME, shown value)``, secrets masked: safe to print or log."""
        rows = []
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.metadata["secret"] and value:
                shown = "(set)"
            elif value in (None, "", ()):
                shown = "(unset)"
            elif isinstance(value, dict):
                shown = ";".join(f"{k}={v}" for k, v in value.items())
            else:
                shown = str(value)
            rows.append((f.metadata["env"], shown))
        return rows
