"""The service stands apart from its test doubles: what each process imports, what the sandboxes
need beyond the service (the ``sandbox`` extra), and a package build that ships their data."""

import ast
import importlib.metadata
import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests import processes

PACKAGE = processes.ROOT / "magsync"
SANDBOX = PACKAGE / "sandbox"


def _imported_modules(argv, env):
    """Every module ``python -X importtime <argv>`` imported, by dotted name."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", *argv],
        env=env,
        cwd=processes.ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    names = set()
    for line in result.stderr.splitlines():
        if line.startswith("import time:") and line.count("|") == 2:
            name = line.rsplit("|", 1)[1].strip()
            if name != "imported package":
                names.add(name)
    assert "magsync.cli" in names, result.stderr[-2000:]
    return names


@pytest.mark.parametrize(
    "command",
    [["worker", "--help"], ["db", "--help"], ["clock", "--help"], ["reconcile", "--help"]],
)
def test_the_service_commands_import_no_sandbox(command):
    modules = _imported_modules(["-m", "magsync", *command], processes.BASE_ENV)
    assert sorted(m for m in modules if m.startswith("magsync.sandbox")) == []


def test_the_web_factory_imports_only_what_receiving_needs(unused_port):
    """gunicorn's ``create_app()`` loads no database, Salesforce client, worker or sandbox."""
    forbidden = (
        "sqlalchemy",
        "alembic",
        "simple_salesforce",
        "magsync.ledger",
        "magsync.salesforce",
        "magsync.sync",
        "magsync.worker",
        "magsync.sandbox",
    )
    script = textwrap.dedent(
        f"""
        import json, sys
        from magsync.web import create_app
        app = create_app()
        assert app.extensions["magsync.receiver"].publisher is not None
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in {{"sqlalchemy", "alembic",
            "simple_salesforce"}} or m.startswith({forbidden!r}))
        print(json.dumps(loaded))
        """
    )
    env = {
        **processes.BASE_ENV,
        "MAGENTO_WEBHOOK_SECRET": "layout-test-secret",
        # Nothing listens there: the factory only warns that the broker is away.
        "CELERY_BROKER_URL": f"amqp://guest:guest@127.0.0.1:{unused_port}//",
        "MAGSYNC_PUBLISH_TIMEOUT": "1",
    }
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(result.stdout.splitlines()[-1]) == []


def _top_level_imports(paths):
    """Top-level names of the absolute imports in the modules ``paths``."""
    names = set()
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names


def _service_modules():
    return [
        p
        for p in PACKAGE.rglob("*.py")
        if SANDBOX not in p.parents and "migrations" not in p.relative_to(PACKAGE).parts
    ]


def test_no_service_module_imports_the_sandboxes():
    importers = []
    for path in _service_modules():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            modules = []
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                modules = [node.module]
            if any(m == "magsync.sandbox" or m.startswith("magsync.sandbox.") for m in modules):
                importers.append(f"{path.relative_to(processes.ROOT)}:{node.lineno}")
    # The CLI names the sandbox commands as strings, loaded only when called.
    assert importers == []


def _declared(requirements, extra):
    """Distribution names required by ``extra`` (None: the install requirements)."""
    names = set()
    for requirement in requirements:
        name = re.split(r"[\s;<>=!~\[]", requirement, maxsplit=1)[0].lower()
        marker = requirement.partition(";")[2]
        in_extra = f'extra == "{extra}"' in marker if extra else "extra ==" not in marker
        if in_extra:
            names.add(name.replace("_", "-"))
    return names


def test_what_only_the_sandboxes_import_is_in_the_sandbox_extra():
    """``magsync[sandbox]`` exists; a module only the sandboxes import comes from it (or from
    what the service installs anyway); and it holds nothing the service needs by itself."""
    requirements = importlib.metadata.requires("magsync")
    service, extra = _declared(requirements, None), _declared(requirements, "sandbox")
    provided = importlib.metadata.metadata("magsync").get_all("Provides-Extra") or []
    assert "sandbox" in provided, "the sandbox extra is missing from setup.cfg"
    stdlib = set(sys.stdlib_module_names)
    dists = importlib.metadata.packages_distributions()
    service_imports = _top_level_imports(_service_modules())
    sandbox_imports = _top_level_imports(SANDBOX.rglob("*.py"))
    sandbox_only = sandbox_imports - service_imports - stdlib - {"magsync"}
    undeclared = {}
    for module in sorted(sandbox_only):
        owners = {d.lower().replace("_", "-") for d in dists.get(module, [module])}
        if not owners & (extra | service):
            undeclared[module] = sorted(owners)
    assert undeclared == {}, f"add to the sandbox extra in setup.cfg: {undeclared}"
    assert not extra & service


def test_building_the_package_ships_the_sandbox_data_without_a_warning(tmp_path):
    result = subprocess.run(
        [sys.executable, "setup.py", "build_py", "--build-lib", str(tmp_path)],
        cwd=processes.ROOT,
        env=processes.BASE_ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "'magsync.sandbox.magento.data'" not in output
    data = tmp_path / "magsync" / "sandbox" / "magento" / "data"
    assert sorted(p.name for p in data.iterdir()) == sorted(
        p.name for p in (SANDBOX / "magento" / "data").iterdir()
    )
    assert (tmp_path / "magsync" / "sandbox" / "salesforce" / "schema.json").is_file()
    assert not (tmp_path / "tests").exists()
    assert not [p for p in Path(tmp_path).rglob("__pycache__")]
