"""Ticket operations of the seed: create_ticket, get_current_ticket_list, check_ticket_list,
proceed_ticket, add_ticket_to_proceeded_list, send_ticket, set_assigned_user, and the pure
planning of a handler's outcome (outcomes)."""
