"""Who may do what through the HTTP API: bearer tokens and their scopes."""
