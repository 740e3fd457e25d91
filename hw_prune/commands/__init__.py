"""One module per subcommand (see hw_prune/cli.py for the contract)."""
