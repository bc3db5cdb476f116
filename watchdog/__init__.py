"""The watchdog process: proves from the database that every bot is alive (built in issue 3)."""
