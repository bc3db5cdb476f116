"""Where a fleet keeps its files, from the config folder and BOTFLEET_VAR: the one place paths are made.

Nothing here looks at where botfleet's code is installed, so an installed package and a checkout
behave alike. The project folder is the config folder's parent. Runtime state (the embedded
database, logs, the supervisord socket and pid file) lives in the var folder: $BOTFLEET_VAR, else
var/ in the project folder. supervisord's own config files sit beside the var folder they point
into: in the project folder (supervisord.conf, supervisord.d/) when var is the project's, else in
$BOTFLEET_VAR itself, so a fleet with its own var folder never writes into the project.
"""

import os
from dataclasses import dataclass
from pathlib import Path

from common.config.names import HOST_ENV, hostname

VAR_ENV = "BOTFLEET_VAR"
CONFIG_ENV = "BOTFLEET_CONFIG"


@dataclass(frozen=True)
class FleetPaths:
    home: Path  # the project folder: the config folder's parent
    var: Path
    # The fleet host whose supervisord uses these files; None: this machine's ($BOTFLEET_HOST, else its
    # name). Set when one machine plays several hosts (the tests).
    host: str | None = None

    @classmethod
    def of(cls, config_root: Path) -> "FleetPaths":
        home = Path(config_root).resolve().parent
        var = os.environ.get(VAR_ENV)
        return cls(home=home, var=Path(var).resolve() if var else home / "var")

    @property
    def host_name(self) -> str:
        return self.host or hostname()

    @property
    def pgdata(self) -> Path:
        return self.var / "pgdata"

    @property
    def log_dir(self) -> Path:
        return self.var / "log"

    @property
    def supervisor_socket(self) -> Path:
        return self.var / "supervisor.sock"

    @property
    def supervisord_pidfile(self) -> Path:
        return self.var / "supervisord.pid"

    @property
    def supervisord_dir(self) -> Path:
        """The folder of supervisord.conf; supervisord.d/ is inside it."""
        return self.home if self.var == self.home / "var" else self.var

    @property
    def supervisord_conf(self) -> Path:
        return self.supervisord_dir / "supervisord.conf"

    @property
    def programs_dir(self) -> Path:
        return self.supervisord_dir / "supervisord.d"

    def environment(self, config_root: Path) -> dict:
        """What a child process needs in its environment to find the same config and paths."""
        env = {CONFIG_ENV: str(Path(config_root).resolve()), VAR_ENV: str(self.var)}
        return env | ({HOST_ENV: self.host} if self.host else {})
