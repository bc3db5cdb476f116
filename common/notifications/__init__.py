"""Notifications to users: the outbox rows, the in-app inbox, and (later) their delivery by email."""
