"""Stopping and starting one bot's processes through supervisord, for `botfleet bot disable|enable`."""

import xmlrpc.client

from common.config.names import process_names
from common.fleet import render, supervisor
from common.fleet.render import STOP_MARGIN_S


def set_running(config, spec, running: bool) -> str:
    """Start or stop every process of a bot on this host; what was done, in words. A disabled bot stays
    stopped: supervisord does not restart a process it was told to stop, its rendered program is marked not to
    start (autostart=false) when supervisord starts again or reloads its config, and the watchdog leaves it alone."""
    fleet_paths = config.paths
    if spec.name not in config.local_bots():
        return (f"it does not run on this host ({fleet_paths.host_name}); run this command on "
                f"{', '.join(config.hosts_of(spec.name))} to {'start' if running else 'stop'} its processes there")
    render.mark_disabled(fleet_paths, spec.name, disabled=not running)
    # Each call waits for the process to start (startsecs) or to stop (stopwaitsecs, after which supervisord
    # kills it): that long, and the usual wait for an answer on top.
    rpc = supervisor.client(fleet_paths.supervisor_socket,
                            timeout_s=spec.stop_timeout_s + STOP_MARGIN_S + supervisor.RPC_TIMEOUT_S).supervisor
    done = []
    for name in process_names(spec.name, spec.replicas):
        target = f"{spec.metaservice}:{name}"
        try:
            rpc.startProcess(target, True) if running else rpc.stopProcess(target, True)
            done.append(name)
        except xmlrpc.client.Fault as fault:
            if "ALREADY_STARTED" not in fault.faultString and "NOT_RUNNING" not in fault.faultString:
                return f"supervisord refused to {'start' if running else 'stop'} {target}: {fault.faultString}"
        except OSError:
            return f"supervisord is not running ({fleet_paths.supervisor_socket}): no process to " \
                   f"{'start' if running else 'stop'}"
    return f"{'started' if running else 'stopped'} {', '.join(done) or 'nothing (already so)'}"
