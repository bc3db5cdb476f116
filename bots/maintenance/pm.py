"""maintenance/pm: a preventive maintenance plan (seed 000's generator work).

The plan generates a work order and waits for it; the work order reports back by closing as DONE
or FAILED, and the plan decides what that means, including scheduling its next run. The generic
machinery only starts and ends jobs; the domain decisions stay here, at the source of the job.
"""

from datetime import datetime, timedelta

WORK_ORDER_DONE = 3


def scheduled(ticket, ctx):
    run_at = ticket.payload.get("run_at")
    if run_at and datetime.fromisoformat(run_at) > ctx.now():
        return ctx.wait_until_time(datetime.fromisoformat(run_at))
    return ctx.send_ticket()


def generating(ticket, ctx):
    report = ticket.payload.get("woken_by")
    if report is None:
        order = ctx.create_ticket("work_order", {"plan": ticket.id, "task": ticket.payload.get("task", "inspect"),
                                                 "fail": ticket.payload.get("fail", False)})
        return ctx.wait_until_ticket(order)
    # The work order reported back; the plan submits its own next run either way.
    every_s = float(ticket.payload.get("every_s", 0))
    if every_s > 0:
        next_run = ctx.now() + timedelta(seconds=every_s)
        ctx.create_ticket("pm", {**_plan_settings(ticket.payload), "run_at": next_run.isoformat()})
    return ctx.send_ticket() if report["state"] == WORK_ORDER_DONE else ctx.send_ticket(to=4)


def _plan_settings(payload):
    return {key: payload[key] for key in ("task", "every_s") if key in payload}
