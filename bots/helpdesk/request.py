"""helpdesk/request: new -> accepted -> done; or, when nobody accepts it within its lifetime, timed_out.

The request waits in `new` for a member of `support` to accept it (`botfleet ticket accept ID USER`);
meanwhile its bot asks every member again each notification period. If nobody does within the
lifetime, the bot moves it to timed_out (the type's on_timeout) and tells the requester once.
"""


def new(ticket, ctx):
    return ctx.wait_for_acceptance() or ctx.send_ticket()


def accepted(ticket, ctx):
    ticket.payload["done_by"] = ticket.assigned_user
    return ctx.send_ticket()
