"""``sync.scan.classify``: an order the ledger applied in this version costs nothing; any other
version, a new order or an invalid one is to be synced."""

import pytest

from magsync.sandbox.salesforce import SandboxOrg
from magsync.settings import Settings
from magsync.sync.pipeline import sync_order
from magsync.sync.scan import CHANGED, INVALID, NEW, UNCHANGED, classify
from magsync.sync.services import Services
from tests.helpers import event_for, load_fixture


@pytest.fixture(scope="module")
def org(tmp_path_factory):
    with SandboxOrg(state_dir=tmp_path_factory.mktemp("scan-org")) as org:
        yield org


@pytest.fixture
def services(org, tmp_path):
    env = {"DATABASE_URL": f"sqlite:///{tmp_path / 'ledger.db'}", **org.settings()}
    svc = Services.build(Settings.from_env(env))
    yield svc
    svc.close()


def seed_order(**changes):
    return dict(load_fixture("seed_webhook.json")["order"], **changes)


def kinds(documents, svc):
    return [v.kind for v in classify(documents, svc.ledger, svc.settings)]


def test_an_applied_version_is_unchanged_and_anything_else_is_to_sync(services):
    applied = seed_order()
    assert kinds([applied], services) == [NEW]
    sync_order(event_for(applied), services)

    later_same_fields = seed_order(updated_at="2025-06-01 00:00:00")
    older = seed_order(updated_at="2001-01-01 00:00:00", grand_total=1)
    changed = seed_order(updated_at="2025-06-01 00:00:00", status="complete", state="complete")
    other = seed_order(increment_id="000000777")
    assert kinds([applied, older, changed, other], services) == [
        UNCHANGED,
        UNCHANGED,
        CHANGED,
        NEW,
    ]
    # A newer save whose fields map the same is a version the ledger has not recorded yet.
    assert kinds([later_same_fields], services) == [CHANGED]
    sync_order(event_for(later_same_fields), services)
    assert kinds([later_same_fields, applied], services) == [UNCHANGED, UNCHANGED]


def test_an_invalid_document_is_handed_on_for_the_worker_to_dead_letter(services):
    broken = seed_order(increment_id="000000778", grand_total="1e400")
    verdicts = classify([broken], services.ledger, services.settings)
    assert [v.kind for v in verdicts] == [INVALID]
    assert verdicts[0].needs_sync and verdicts[0].increment_id == "000000778"
