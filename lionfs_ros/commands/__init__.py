"""Subcommands of the `lionfs` command, one module each with add_arguments() and run()."""
