"""The Magento REST API, signed with the integration's OAuth 1.0a secrets (HMAC-SHA256).

Bearer use of an integration's access token is off by default since Magento 2.4.4, so every
request is signed in the ``Authorization`` header. Query parameters (``searchCriteria[...]``
brackets included) are part of the signature base string; requests_oauthlib signs the URL that
requests will send, so the two agree.
"""

import logging

import requests
from oauthlib.oauth1 import SIGNATURE_HMAC_SHA256
from requests_oauthlib import OAuth1

from magsync.errors import RetryLater, classify_magento
from magsync.magento.walk import MAX_PAGE_SIZE, OrderWalk, ids_params
from magsync.settings import MAGENTO_REST

log = logging.getLogger(__name__)


class MagentoClient:
    """Read access to orders. One per worker process; thread-safe for reads."""

    def __init__(self, settings, session=None):
        settings.require(*MAGENTO_REST)
        self.settings = settings
        self.session = session or requests.Session()
        self.auth = OAuth1(
            settings.magento_consumer_key,
            settings.magento_consumer_secret,
            settings.magento_access_token,
            settings.magento_access_token_secret,
            signature_method=SIGNATURE_HMAC_SHA256,
            signature_type="AUTH_HEADER",
        )
        store = f"/{settings.magento_store_code}" if settings.magento_store_code else ""
        self.rest_url = f"{settings.magento_base_url}/rest{store}/V1"

    def get_order(self, entity_id):
        """``GET /V1/orders/{entity_id}``: the order's current state (the store is the truth)."""
        return self._get(f"/orders/{int(entity_id)}")

    def get_orders(self, entity_ids):
        """``{entity_id: order}`` of those of ``entity_ids`` the store has, in one
        ``GET /V1/orders`` search per ``MAX_PAGE_SIZE`` ids (``entity_id in (...)``): the same
        documents ``get_order`` answers, for a batch at the cost of one request."""
        wanted = sorted({int(entity_id) for entity_id in entity_ids})
        found = {}
        for start in range(0, len(wanted), MAX_PAGE_SIZE):
            page = self.search_orders(ids_params(wanted[start : start + MAX_PAGE_SIZE]))
            for item in page.get("items") or []:
                entity_id = item.get("entity_id") if isinstance(item, dict) else None
                if isinstance(entity_id, int | str) and str(entity_id).isdigit():
                    found[int(entity_id)] = item
        return {entity_id: found[entity_id] for entity_id in wanted if entity_id in found}

    def search_orders(self, params):
        """``GET /V1/orders`` with ``params`` (``(key, value)`` pairs: ``searchCriteria[...]``,
        ``fields``): ``{"items", "search_criteria", "total_count"}``, or what ``fields`` kept.

        Build the parameters with :func:`magsync.magento.walk.search_params`, or walk with
        :meth:`walk_orders`: paging by page number skips orders saved during the walk.
        """
        return self._get("/orders", params=params)

    def store_views(self):
        """``GET /V1/store/storeViews``: ``[{"id", "code", "name", "website_id", ...}]``."""
        return self._get("/store/storeViews")

    def walk_orders(self, since=None, **options):
        """An :class:`~magsync.magento.walk.OrderWalk` over the orders updated since ``since``.

        ``options`` are OrderWalk's (``cursor``, ``until``, ``store_code``, ``fields``,
        ``page_size``); the page size defaults to ``MAGSYNC_RECONCILE_PAGE_SIZE``.
        """
        options.setdefault("page_size", self.settings.reconcile_page_size)
        return OrderWalk(self, since, **options)

    def _get(self, path, params=None):
        url = self.rest_url + path
        try:
            response = self.session.get(
                url,
                params=params,
                auth=self.auth,
                headers={"Accept": "application/json"},
                timeout=self.settings.magento_timeout,
            )
        except requests.Timeout:
            raise RetryLater(
                "Magento did not answer in time", reason="magento_timeout", system="magento"
            ) from None
        except requests.RequestException as exc:
            raise RetryLater(
                f"Magento unreachable: {type(exc).__name__}",
                reason="magento_unreachable",
                system="magento",
            ) from None
        try:
            body = response.json()
        except ValueError:
            body = response.text[:200]
        if response.status_code != 200:
            raise classify_magento(response.status_code, body, response.headers)
        return body
