"""The ``memmesh`` command line: Typer commands, each a few lines over the service."""
