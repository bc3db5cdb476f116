"""botfleet's engine: config, schema, ticket operations and the bot runtime."""

__version__ = "0.1.0"
