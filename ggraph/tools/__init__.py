"""Command-line tools built on ggraph (the `ggraph` subcommands that do real work)."""
