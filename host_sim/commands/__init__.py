"""One module per `microagent` subcommand; each defines `register(subparsers)`.

The CLI discovers them, so a new subcommand is a new file here and nothing else.
"""
