"""A handler module with a type's own timeout handler (tests.timeout_handlers:<name>): what it does is
named by the ticket's payload `on_timeout`."""


def wait_for_acceptance(ticket, ctx):
    return ctx.wait_for_acceptance()


def ticket_timeout(ticket, ctx):
    mode = ticket.payload.get("on_timeout")
    if mode == "own":  # decides for itself: moves on, and tells the creator in its own words
        ctx.send_user_notification(ticket.creator, f"ticket {ticket.id}: handed to the night shift")
        ticket.payload["handed_over"] = True
        return ctx.send_ticket(to=2)
    if mode == "raise":
        raise RuntimeError("the night shift's roster is unreachable")
    if mode == "nonsense":
        return "not an outcome"
    ctx.send_user_notification("ann", f"ticket {ticket.id} timed out; the default applies")
    return None  # the default, with the note above
