"""helpdesk/incident: new -> accepted -> in_progress -> resolved, or rejected.

Each handler gets the ticket and a context and returns what happens next; returning None takes
the normal next state.
"""


def new(ticket, ctx):
    # Reports without a summary are not incidents we can work on.
    if not ticket.payload.get("summary", "").strip():
        ticket.payload["summary"] = "(no summary given)"
    return ctx.send_ticket()


def accept(ticket, ctx):
    if ticket.assigned_user is None:
        ctx.set_assigned_user(ticket.payload.get("assignee", "support-on-duty"))
    return ctx.send_ticket()


def work(ticket, ctx):
    # A ticket that asks to be rejected takes the alternate path (3 -> 5).
    if ticket.payload.get("reject"):
        return ctx.send_ticket(to=5)
    ticket.payload["resolution"] = ticket.payload.get("resolution", "fixed")
    return ctx.send_ticket()
