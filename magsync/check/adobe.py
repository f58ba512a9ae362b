"""The Adobe I/O Events check: the host of Adobe's public keys answers.

With ``ADOBE_IO_CLIENT_ID`` set, each delivery to ``/adobe/events`` is verified with keys fetched
from ``ADOBE_IO_PUBLIC_KEY_BASE_URL``; while that host cannot be reached, deliveries signed with
keys not cached yet are answered 503 (Adobe retries them for 24 hours). Any HTTP answer to a
``HEAD`` of the host's root counts: the check proves the network path and TLS, not a key.
"""

import requests

from magsync.check.report import Finding

SUBJECT = "ADOBE_IO_PUBLIC_KEY_BASE_URL"


def check_key_host(ctx):
    settings = ctx.settings
    if not settings.adobe_client_id:
        yield Finding.skip("/adobe/events", "the Adobe I/O Events intake is off (see Settings)")
        return
    url = settings.adobe_key_base_url + "/"
    try:
        with requests.head(
            url,
            timeout=settings.adobe_timeout,
            verify=settings.adobe_ca_bundle or True,
            allow_redirects=False,
        ) as response:
            status = response.status_code
    except requests.RequestException as exc:
        yield Finding.fail(
            SUBJECT,
            f"the key host {settings.adobe_key_base_url} did not answer ({type(exc).__name__})",
            "allow outbound HTTPS from the web process to it; until then Adobe's deliveries are "
            "answered 503 and retried",
        )
        return
    yield Finding.ok(SUBJECT, f"the key host {settings.adobe_key_base_url} answers (HTTP {status})")
