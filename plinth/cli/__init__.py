"""The `plinth` command line (typer + rich)."""
