"""Is the fleet healthy? The verdict `botfleet check` prints, /healthz serves and the console shows, judged
from the database's records alone: OK only when a watchdog has checked recently and every enabled bot was
healthy at that check."""

OK, CRITICAL = 0, 2  # exit codes as monitoring plugins use them


def judge(rows, stale_s: float) -> tuple[int, str]:
    """(exit code, line) from HEALTH_CHECK rows (one per bot and host that runs it). Pure.

    Every problem names its host: a watchdog that never checked or went stale stands for all the
    bots of its host (they are unjudged, not each broken); a supervisord its host's watchdog could not
    reach is a problem of its own (its processes run with nothing to restart them); otherwise each
    enabled bot must have been found healthy by its host's watchdog recently."""
    if not rows:
        return CRITICAL, "CRITICAL: no watchdog has ever checked this fleet (is `botfleet watchdog run` running?)"
    by_host: dict = {}
    for row in rows:
        by_host.setdefault(row["host"], []).append(row)
    problems, healthy, disabled, newest_ages = [], set(), set(), []
    for host, host_rows in sorted(by_host.items()):
        age_s = host_rows[0]["watchdog_age_s"]
        if age_s is None:
            problems.append(f"{host}: no watchdog has ever checked (is `botfleet up` running there?)")
            continue
        if age_s > stale_s:
            problems.append(f"{host}: watchdog heartbeat is stale: last check {age_s:.1f}s ago (stale after {stale_s:g}s)")
            continue
        newest_ages.append(age_s)
        if host_rows[0].get("supervisor_error"):
            problems.append(f"{host}: {host_rows[0]['supervisor_error']}")
        for row in host_rows:
            if not row["enabled"]:
                disabled.add(row["name"])
            elif row["health"] is None or row["health_age_s"] is None or row["health_age_s"] > stale_s:
                problems.append(f"{host}: {row['name']} not checked recently")
            elif row["health"] != "healthy":
                reason = row["health_reason"] or row["health"]
                problems.append(f"{host}: " + (reason if reason.startswith(row["name"])
                                               else f"{row['name']} {row['health']}: {reason}"))
            else:
                healthy.add(row["name"])
    if problems:
        return CRITICAL, "CRITICAL: " + "; ".join(problems)
    hosts = ", ".join(sorted(by_host))
    return OK, (f"OK: watchdog checked {max(newest_ages):.1f}s ago on {hosts}; {len(healthy)} bot(s) healthy"
                + (f", {len(disabled)} disabled" if disabled else ""))
