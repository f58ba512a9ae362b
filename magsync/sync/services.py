"""What a worker process needs to sync orders, built once per process: the Salesforce writer,
the Magento REST client (when configured) and the ledger."""

from dataclasses import dataclass

from magsync.ledger import Ledger
from magsync.magento.client import MagentoClient
from magsync.salesforce.auth import TokenProvider
from magsync.salesforce.rest import build_session
from magsync.salesforce.writer import SalesforceWriter


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
        magento = MagentoClient(settings) if settings.magento_rest_enabled else None
        writer = SalesforceWriter(settings, tokens, session)
        return cls(settings, writer, magento, Ledger(settings))

    def close(self):
        self.ledger.close()
        self.writer.session.close()
        if self.magento is not None:
            self.magento.session.close()
