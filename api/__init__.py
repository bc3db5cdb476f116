"""The HTTP API process: tickets and their history over HTTP, for people and services outside the fleet."""
