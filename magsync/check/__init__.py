"""``magsync check``: is this deployment ready to sync? A pre-flight for operators.

Each entry of ``CHECKS`` is one named check; it runs when what it ``needs`` was established by
an earlier one (a parsed configuration, a Salesforce token, an API version the org offers) and is
reported as skipped, with the reason, otherwise. In order:

- ``settings``: every variable well-formed; what the processes need is present (no values shown);
- ``salesforce-token``: a token from the configured grant, as a worker obtains it;
- ``salesforce-api``: ``SALESFORCE_API_VERSION`` is offered by the org (``GET /services/data/``);
- ``salesforce-fields``: each field the mapping writes (learnt by dumping sample orders through
  the mapping's schemas, each written where its ``Meta`` declares, see
  ``magsync.check.mapping``) exists, can be written, and holds what is written; each upsert key
  is a unique External ID; every picklist value the mapping writes (the stage map's stages, the
  lead source, the contact role) is active;
- ``salesforce-usage``: the org's daily API usage (``GET /limits``) against the pacing
  thresholds ``MAGSYNC_API_BUDGET`` and ``MAGSYNC_API_HALT`` (a warning above the budget);
- ``magento``: the store answers a signed ``GET /rest/V1/orders?searchCriteria[pageSize]=1``;
- ``broker``: RabbitMQ accepts a connection; its exchanges and queues are declared as expected;
- ``adobe``: with the Adobe I/O Events intake on, the host of Adobe's public keys answers.

``run(environ)`` returns a ``Report``: plain words, the fix under each failure, exit code 1 when
anything failed. The check reads and never writes (no records, no queues).
"""

import contextlib
import logging
import os
from dataclasses import dataclass, field

import click

from magsync.check import adobe, broker, magento, products, salesforce
from magsync.check import settings as settings_check
from magsync.check.report import Finding, Report


@dataclass
class Context:
    """What the checks share: the environment, the settings, and open clients to close."""

    environ: dict
    settings: object = None
    provided: set = field(default_factory=set)
    resources: dict = field(default_factory=dict)

    def provide(self, capability):
        self.provided.add(capability)

    def resource(self, name, factory):
        """The client called ``name``, created by ``factory`` on first use; closed by ``close``."""
        if name not in self.resources:
            self.resources[name] = factory()
        return self.resources[name]

    def close(self):
        for resource in self.resources.values():
            with contextlib.suppress(Exception):
                resource.close()
        self.resources.clear()


def check_settings(ctx):
    parsed, problems = settings_check.parse(ctx.environ)
    if parsed is None:
        yield from problems
        return
    ctx.settings = parsed
    ctx.provide("settings")
    yield from settings_check.findings(parsed)


@dataclass(frozen=True)
class Check:
    name: str
    title: str
    run: object  # (Context) -> iterable of Finding
    needs: str | None = None


CHECKS = (
    Check("settings", "Settings", check_settings),
    Check("salesforce-token", "Salesforce token", salesforce.check_token, needs="settings"),
    Check("salesforce-api", "Salesforce API version", salesforce.check_api_version, "salesforce"),
    Check(
        "salesforce-fields",
        "Salesforce fields the mapping writes",
        salesforce.check_fields,
        needs="salesforce_api",
    ),
    Check(
        "salesforce-line-items",
        "Salesforce line items",
        products.check_line_items,
        needs="salesforce_api",
    ),
    Check(
        "salesforce-usage",
        "Salesforce API usage",
        salesforce.check_api_usage,
        needs="salesforce_api",
    ),
    Check("magento", "Magento REST API", magento.check_magento, needs="settings"),
    Check("broker", "RabbitMQ", broker.check_broker, needs="settings"),
    Check("adobe", "Adobe I/O Events", adobe.check_key_host, needs="settings"),
)

# Who establishes what a check needs, for the reason of a skip.
_PROVIDERS = {
    "settings": "well-formed settings",
    "salesforce": "a Salesforce token",
    "salesforce_api": "an API version the org offers",
}


def run(environ, checks=CHECKS):
    """Run ``checks`` against the settings in ``environ``; a ``Report``."""
    ctx = Context(dict(environ))
    report = Report()
    try:
        for check in checks:
            if check.needs and check.needs not in ctx.provided:
                found = [Finding.skip(check.name, f"needs {_PROVIDERS[check.needs]}")]
            else:
                found = list(check.run(ctx))
            report.add(check.title, found)
    finally:
        ctx.close()
    return report


def main(environ=None):
    """``magsync check``: print the report for ``environ`` (default: the process's); exit 1 on
    failure."""
    # The findings are the output; the clients' own log lines (a refused token) would repeat them.
    logging.getLogger().addHandler(logging.NullHandler())
    report = run(os.environ if environ is None else environ)
    click.echo(report.render(), nl=False)
    raise SystemExit(report.exit_code)
