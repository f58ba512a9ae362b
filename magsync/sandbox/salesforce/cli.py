import click


@click.command()
def command():
    """Run the sandbox Salesforce org."""
    raise click.ClickException("not available yet")
