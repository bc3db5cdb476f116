"""People: users and groups, and who may hold a ticket. Ticket operations check assignees here."""
