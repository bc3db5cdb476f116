"""helpdesk/incident: new -> accepted -> in_progress -> resolved, or rejected.

Nobody is assigned automatically (seed 003): an incident waits in `new` until a member of its group
(`support`) accepts it (`botfleet ticket accept ID USER`), which brings it back here at once.
Each handler gets the ticket and a context and returns what happens next; returning None takes the
normal next state.
"""


def new(ticket, ctx):
    # Reports without a summary are not incidents we can work on.
    if not ticket.payload.get("summary", "").strip():
        ticket.payload["summary"] = "(no summary given)"
    return ctx.wait_for_acceptance() or ctx.send_ticket()


def accept(ticket, ctx):
    return ctx.send_ticket()


def work(ticket, ctx):
    # A ticket that asks to be rejected takes the alternate path (3 -> 5).
    if ticket.payload.get("reject"):
        return ctx.send_ticket(to=5)
    ticket.payload["resolution"] = ticket.payload.get("resolution", "fixed")
    return ctx.send_ticket()
