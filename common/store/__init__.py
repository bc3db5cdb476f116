"""Storage: connections, the embedded server, schema and migrations, and every SQL statement."""
