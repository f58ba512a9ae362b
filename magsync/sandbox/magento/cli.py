import click


@click.command()
def command():
    """Run the sandbox Magento store."""
    raise click.ClickException("not available yet")
