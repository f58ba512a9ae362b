"""What a worker process needs to sync orders, built once per process: the Salesforce writer,
the Magento REST client (when configured) and the ledger."""

from dataclasses import dataclass

import requests
from requests.adapters import HTTPAdapter

from magsync.ledger import Ledger
from magsync.magento.client import MagentoClient
from magsync.salesforce.auth import TokenProvider
from magsync.salesforce.rest import build_session
from magsync.salesforce.writer import SalesforceWriter

# A coalescing worker's threads read their orders from the store at once: this many at a time per
# process, the others waiting for a free connection rather than opening (and dropping) their own.
MAGENTO_CONNECTIONS = 16


def magento_session():
    """The HTTP session of a process's Magento client (keep-alive, bounded connections)."""
    session = requests.Session()
    adapter = HTTPAdapter(pool_connections=2, pool_maxsize=MAGENTO_CONNECTIONS, pool_block=True)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


@dataclass
class Services:
    """What a worker process needs to sync orders; built once per process."""

    settings: object
    writer: SalesforceWriter
    magento: MagentoClient | None
    ledger: Ledger

    @classmethod
    def build(cls, settings):
        """Nothing here connects: the ledger and the token are fetched on first use."""
        session = build_session(settings)
        tokens = TokenProvider(settings, session)
        magento = None
        if settings.magento_rest_enabled:
            magento = MagentoClient(settings, session=magento_session())
        writer = SalesforceWriter(settings, tokens, session)
        return cls(settings, writer, magento, Ledger(settings))

    def close(self):
        self.ledger.close()
        self.writer.session.close()
        if self.magento is not None:
            self.magento.session.close()
