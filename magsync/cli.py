"""The ``magsync`` command: operations (check, dead letters, ...) and the local sandboxes."""

import click


@click.group()
@click.version_option(package_name="magsync")
def main():
    """magsync keeps Salesforce in step with a Magento 2 store."""


@main.group()
def sandbox():
    """Run the local stand-ins for Salesforce and Magento."""


def _register_sandboxes():
    from magsync.sandbox.magento.cli import command as magento_command
    from magsync.sandbox.salesforce.cli import command as salesforce_command

    sandbox.add_command(salesforce_command, "salesforce")
    sandbox.add_command(magento_command, "magento")


_register_sandboxes()
