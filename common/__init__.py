"""What the processes of the fleet share: configuration, storage, ticket operations, fleet operations, the CLI."""

__version__ = "0.1.0"
