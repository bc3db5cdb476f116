"""`botfleet reload`: bring a running fleet onto its config folder as it is now, without losing work.

A process reads the config once, as it starts (the API its ticket types and status models, the watchdog its
bots, each bot its type), so a changed config reaches a process only by restarting it. Every rendered program
carries a digest of the config (common/fleet/render.py): after the database is upgraded and the files are
rendered, supervisord's reloadConfig names the groups whose programs changed, and each is restarted as
`supervisorctl update` does it (stopped, removed, added again), one group after another, so the groups not
being stopped keep working meanwhile. A stop is graceful: a bot finishes or releases the tickets in hand on SIGTERM within its
stop timeout, the API answers the requests it has, and nothing is lost; whatever waits meanwhile is in the
database and is taken up by the processes that start.
"""

import xmlrpc.client

from common.config.names import process_names
from common.errors import BotfleetError
from common.fleet import render, supervisor
from common.store import migrate

START_TIMEOUT_S = 60
WATCHDOG_GROUP = "watchdog"
WATCHDOG_STOP_WAIT_S = 10  # its rendered stopwaitsecs
FAULT_FAILED = 30  # supervisor.xmlrpc.Faults.FAILED: a process that could not be stopped


def reload(config, url, *, start_timeout_s=START_TIMEOUT_S) -> int:
    """Upgrade the database, render, restart what changed and start what supervisord gave up on; says what it did.
    The config must have been checked (handlers imported) by the caller."""
    fleet_paths = config.paths
    if supervisor.process_states(fleet_paths.supervisor_socket) is None:
        raise BotfleetError(f"supervisord is not running ({fleet_paths.supervisor_socket}): nothing to reload; "
                            f"`botfleet up` starts the fleet with this config")
    migrate.upgrade(url, config)
    print("database schema is up to date; ticket types, status codes and bots written")
    disabled = render.disabled_bots(url)
    render.write(config, fleet_paths, disabled=disabled)
    local = config.local_bots(fleet_paths.host_name)
    # A group's stop waits for its slowest process's stopwaitsecs; the usual wait for an answer on top.
    longest_stop_s = max([spec.stop_timeout_s + render.STOP_MARGIN_S for spec in local.values()]
                         + [WATCHDOG_STOP_WAIT_S])
    rpc = supervisor.client(fleet_paths.supervisor_socket, longest_stop_s + supervisor.RPC_TIMEOUT_S).supervisor
    try:
        added, changed, removed = rpc.reloadConfig()[0]
    except xmlrpc.client.Fault as fault:
        raise BotfleetError(f"supervisord refused the rendered files in {fleet_paths.programs_dir}: "
                            f"{fault.faultString}") from None
    for group in removed:
        _stop_group(rpc, group)
        rpc.removeProcessGroup(group)
        print(f"{group}: stopped and removed (no longer configured on this host)")
    # The watchdog last: it keeps judging the bots, with what it knew, while they restart.
    for group in sorted(changed, key=lambda name: (name == WATCHDOG_GROUP, name)):
        _stop_group(rpc, group)
        rpc.removeProcessGroup(group)
        rpc.addProcessGroup(group)
        print(f"{group}: restarted on the new config")
    for group in added:
        rpc.addProcessGroup(group)
        print(f"{group}: added")
    if not (added or changed or removed):
        print("no program changed (config/ says what the running processes read): nothing restarted")
    started = set(added) | set(changed)
    expected = {name for bot, spec in local.items() if spec.metaservice in started and bot not in disabled
                for name in process_names(bot, spec.replicas)}
    if WATCHDOG_GROUP in started:
        expected.add("watchdog")
    supervisor.wait_running(fleet_paths.supervisor_socket, expected, start_timeout_s,
                            failed_says="restarted on the new config", log_dir=fleet_paths.log_dir)
    _start_given_up(rpc, local, disabled)
    print(f"fleet reloaded: {len(expected)} process(es) restarted or added and RUNNING")
    return 0


def _stop_group(rpc, group):
    """Stop every process of a group and wait until each has exited (SIGTERM, then its stopwaitsecs)."""
    failed = [result for result in rpc.stopProcessGroup(group, True) if result["status"] == FAULT_FAILED]
    if failed:
        raise BotfleetError(f"supervisord could not stop group {group}: {failed}; nothing of it was restarted")


def _start_given_up(rpc, local: dict, disabled):
    """Start again the processes of enabled bots that supervisord gave up on (FATAL): a bad config or handler
    may be mended now, and the watchdog would only try at its next backoff."""
    for info in rpc.getAllProcessInfo():
        bot = next((name for name, spec in local.items() if info["name"] in process_names(name, spec.replicas)), None)
        if info["statename"] == "FATAL" and bot is not None and bot not in disabled:
            try:
                rpc.startProcess(f"{info['group']}:{info['name']}", False)
                print(f"{info['name']}: was FATAL, started again")
            except xmlrpc.client.Fault as fault:
                print(f"{info['name']}: was FATAL, could not start it: {fault.faultString}")
