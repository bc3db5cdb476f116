"""The command line: the one place that knows every kind of process (bots, the watchdog, the API)."""
