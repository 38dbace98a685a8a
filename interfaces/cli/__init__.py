"""The `hostplane` command line."""
