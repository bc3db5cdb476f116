"""enotify/site (seed 002): a site to (re)generate. Generators outside the fleet pull the sites queued
for generation over HTTP (state 2 is `worker: external`); the fleet only queues them and keeps score."""


def queued(ticket, ctx):
    """A site asked for: it joins the generators' queue at once."""
    if not ticket.payload.get("site"):
        return ctx.fail("a site ticket needs payload.site, the site's short name")
    return ctx.send_ticket()
