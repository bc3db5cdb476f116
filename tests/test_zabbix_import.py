"""The Zabbix template imported into a real Zabbix 6.0, and the userparameters run by a real agent.

Zabbix 6.0 is what Debian 12 ships, and it refuses export files of any later version, so the template
must import there; 6.2 to 7.0 convert a 6.0 file on import. The frontend (zabbix-frontend-php, unpacked
from its package by `make debian-packages`, without Apache) runs under `php -S` on a database loaded
with the schema and data of zabbix-server-pgsql; no Zabbix server daemon is needed to import. What the
checks expect is read from the template file, so they follow it.

The userparameters run through zabbix_agentd -t against the whole shipped fleet under supervisord.
"""

import copy
import gzip
import json
import re
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import psycopg
import pytest
import yaml
from psycopg.conninfo import conninfo_to_dict

from common.fleet.wait import wait_until
from tests.conftest import ROOT, scratch_database
from tests.harness import child_env, free_port

pytestmark = [pytest.mark.processes]

TEMPLATE_FILE = ROOT / "zabbix" / "template_botfleet.yaml"
USERPARAMETER_FILE = ROOT / "zabbix" / "userparameter_botfleet.conf"
FRONTEND = ROOT / ".cache" / "zabbix-frontend" / "usr" / "share" / "zabbix"
SCHEMA_DIR = Path("/usr/share/zabbix-server-pgsql")
SCHEMA_FILES = ("schema.sql.gz", "images.sql.gz", "data.sql.gz")  # in this order: data refers to images
PHP = "php8.2"
PHP_EXTENSIONS = ("pgsql", "mbstring", "xml", "gd", "bcmath")
AGENTD = Path("/usr/sbin/zabbix_agentd")
INSTALLED_BOTFLEET = "/opt/botfleet/.venv/bin/botfleet"  # where the userparameter file expects it
MISSING_KEY = "botfleet.no.such.key"
# Everything a template file can hold, created or updated as the frontend's import form does by default.
BOTH = {"createMissing": True, "updateExisting": True}
IMPORT_RULES = {"groups": {"createMissing": True}, "templates": BOTH, "templateLinkage": {"createMissing": True},
                "templateDashboards": BOTH, "items": BOTH, "triggers": BOTH, "discoveryRules": BOTH,
                "graphs": BOTH, "httptests": BOTH, "valueMaps": BOTH}
ITEM_REFERENCE = re.compile(r"\(/[^/]+/([^,)]+(?:\[[^\]]*\])?)")  # function(/host/key,...
AGENT_ANSWER = re.compile(r"(?P<key>\S+)\s+\[(?P<kind>\w)\|(?P<value>.*)\]\s*", re.DOTALL)


def missing_for_the_frontend() -> list:
    """What the import test needs and this machine lacks, named by the Debian package that brings it."""
    php = shutil.which(PHP)
    if php is None:
        missing = [f"{PHP} (php8.2-cli)"]
    else:
        loaded = set(subprocess.run([php, "-m"], capture_output=True, text=True, timeout=60).stdout.lower().split())
        missing = [f"the PHP extension {name} (php8.2-{name})" for name in PHP_EXTENSIONS if name not in loaded]
    missing += [f"{SCHEMA_DIR / name} (zabbix-server-pgsql)" for name in SCHEMA_FILES
                if not (SCHEMA_DIR / name).exists()]
    if not (FRONTEND / "api_jsonrpc.php").exists():
        missing.append(f"{FRONTEND} (zabbix-frontend-php, unpacked by `make debian-packages`)")
    return missing


def php_string(text) -> str:
    return "'" + str(text or "").replace("\\", "\\\\").replace("'", "\\'") + "'"


def frontend_config(db_url) -> str:
    """zabbix.conf.php for the database at `db_url` (the variables of Debian's zabbix.conf.php.example)."""
    params = conninfo_to_dict(db_url)
    settings = {"TYPE": "POSTGRESQL", "SERVER": params.get("host", "127.0.0.1"), "PORT": params.get("port", "5432"),
                "DATABASE": params["dbname"], "USER": params.get("user", ""), "PASSWORD": params.get("password", ""),
                "SCHEMA": ""}
    lines = ["<?php"] + [f"$DB[{php_string(k)}] = {php_string(v)};" for k, v in settings.items()]
    lines += ["$DB['ENCRYPTION'] = false;", "$DB['DOUBLE_IEEE754'] = true;",
              "$ZBX_SERVER = '127.0.0.1';", "$ZBX_SERVER_PORT = '10051';", "$ZBX_SERVER_NAME = 'botfleet test';",
              "$IMAGE_FORMAT_DEFAULT = IMAGE_FORMAT_PNG;"]
    return "\n".join(lines) + "\n"


def install_frontend(root: Path, db_url):
    """A copy of the frontend at `root` that reads its config from root/conf.

    Debian's build reads /etc/zabbix/zabbix.conf.php (a constant in CConfigFile), which a test must not
    write; the copy's constant points at its own conf/ instead. A copy, not symlinks: PHP resolves
    __FILE__ through symlinks, which would lead the includes back to the shared tree.
    """
    shutil.copytree(FRONTEND, root, symlinks=True)
    config_class = root / "include" / "classes" / "core" / "CConfigFile.php"
    debian_path = "const CONFIG_FILE_PATH = '/etc/zabbix/zabbix.conf.php';"
    source = config_class.read_text()
    assert debian_path in source, f"{config_class} no longer reads {debian_path}"
    config_class.write_text(source.replace(debian_path, "const CONFIG_FILE_PATH = __DIR__.'/../../../conf/zabbix.conf.php';"))
    conf = root / "conf" / "zabbix.conf.php"
    conf.unlink(missing_ok=True)  # Debian's tree may hold a symlink to /etc there
    conf.write_text(frontend_config(db_url))


def load_zabbix_schema(db_url):
    """The server package's SQL files, each sent whole (plain SQL with its own BEGIN/COMMIT, no COPY)."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("SET synchronous_commit = off")
        for name in SCHEMA_FILES:
            with gzip.open(SCHEMA_DIR / name, "rt", encoding="utf-8") as sql:
                conn.execute(sql.read())


class ZabbixApi:
    """JSON-RPC to a Zabbix 6.0 frontend; after login() the session token goes in each request's auth."""

    def __init__(self, url):
        self.url = url
        self.auth = None

    def answer(self, method, params):
        """The whole JSON-RPC answer: {"result": ...} or {"error": {"code", "message", "data"}}."""
        body = {"jsonrpc": "2.0", "method": method, "params": params, "id": 1}
        if self.auth and method not in ("user.login", "apiinfo.version"):
            body["auth"] = self.auth
        request = urllib.request.Request(self.url, json.dumps(body).encode(), {"Content-Type": "application/json-rpc"})
        with urllib.request.urlopen(request, timeout=120) as response:
            return json.load(response)

    def call(self, method, params):
        answer = self.answer(method, params)
        assert "result" in answer, f"{method}: {answer}"
        return answer["result"]

    def version(self):
        """The API version, or None while the frontend does not answer yet."""
        try:
            return self.answer("apiinfo.version", {}).get("result")
        except (OSError, urllib.error.URLError, ValueError):
            return None

    def login(self, username, password):
        self.auth = self.call("user.login", {"username": username, "password": password})


@pytest.fixture(scope="module")
def zabbix(server_url, tmp_path_factory):
    """A Zabbix 6.0 frontend served by `php -S` on a fresh database, logged in as the default Admin."""
    missing = missing_for_the_frontend()
    if missing:
        pytest.skip("the Zabbix 6.0 import test needs " + ", ".join(missing))
    folder = tmp_path_factory.mktemp("zabbix")
    with scratch_database(server_url, "zabbix") as db_url:
        load_zabbix_schema(db_url)
        install_frontend(folder / "ui", db_url)
        port = free_port()
        with (folder / "php.log").open("w") as log:
            server = subprocess.Popen([shutil.which(PHP), "-S", f"127.0.0.1:{port}", "-t", str(folder / "ui")],
                                      stdout=log, stderr=subprocess.STDOUT)
        try:
            api = ZabbixApi(f"http://127.0.0.1:{port}/api_jsonrpc.php")
            wait_until(api.version, 30, lambda: f"the frontend to answer: {(folder / 'php.log').read_text()[-1500:]}")
            api.login("Admin", "zabbix")
            yield api
        finally:
            server.terminate()
            server.wait(timeout=30)


# -- what the template file says ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def source():
    return TEMPLATE_FILE.read_text()


@pytest.fixture(scope="module")
def template(source):
    (only,) = yaml.safe_load(source)["zabbix_export"]["templates"]
    return only


def item_triggers(template):
    return [t for item in template.get("items", []) for t in item.get("triggers", [])]


def trigger_prototypes(template):
    found = []
    for rule in template.get("discovery_rules", []):
        found += rule.get("trigger_prototypes", [])
        found += [t for proto in rule.get("item_prototypes", []) for t in proto.get("trigger_prototypes", [])]
    return found


def expected_triggers(triggers):
    """name -> (uuid, keys its expression reads, names of the triggers it depends on), from the file."""
    return {t["name"]: (t["uuid"], sorted(set(ITEM_REFERENCE.findall(t["expression"]))),
                        sorted(d["name"] for d in t.get("dependencies", []))) for t in triggers}


def imported_triggers(api, method, templateid):
    """The same, from Zabbix (which keeps an expression as functions on items, macros unexpanded)."""
    found = api.call(method, {"templateids": templateid, "output": ["description", "uuid"],
                              "selectItems": ["key_"], "selectDependencies": ["description"]})
    return {t["description"]: (t["uuid"], sorted({i["key_"] for i in t["items"]}),
                               sorted(d["description"] for d in t["dependencies"])) for t in found}


def import_template(api, text):
    return api.answer("configuration.import", {"format": "yaml", "source": text, "rules": IMPORT_RULES})


@pytest.fixture(scope="module")
def imported(zabbix, source, template):
    """The answer to importing the template file as it is, and the template's id."""
    answer = import_template(zabbix, source)
    found = zabbix.call("template.get", {"filter": {"host": template["template"]}, "output": ["templateid", "uuid"]})
    return answer, found


# -- the import ----------------------------------------------------------------------------------------


def test_zabbix_6_0_imports_the_template(zabbix, imported, template):
    answer, found = imported
    assert zabbix.version().startswith("6.0.")
    assert answer == {"jsonrpc": "2.0", "result": True, "id": 1}
    assert [t["uuid"] for t in found] == [template["uuid"]]


def test_the_items_and_their_triggers_exist(zabbix, imported, template):
    (found,) = imported[1]
    items = zabbix.call("item.get", {"templateids": found["templateid"], "output": ["key_", "name", "uuid"]})
    assert sorted((i["key_"], i["name"], i["uuid"]) for i in items) == sorted(
        (i["key"], i["name"], i["uuid"]) for i in template["items"])
    assert imported_triggers(zabbix, "trigger.get", found["templateid"]) == expected_triggers(item_triggers(template))


def test_the_discovery_rule_and_its_prototypes_exist(zabbix, imported, template):
    (found,) = imported[1]
    rules = zabbix.call("discoveryrule.get", {"templateids": found["templateid"], "output": ["key_", "name", "uuid"]})
    assert sorted((r["key_"], r["name"], r["uuid"]) for r in rules) == sorted(
        (r["key"], r["name"], r["uuid"]) for r in template["discovery_rules"])
    for rule in template["discovery_rules"]:
        (ruleid,) = [r["itemid"] for r in rules if r["key_"] == rule["key"]]
        prototypes = zabbix.call("itemprototype.get", {"discoveryids": ruleid, "output": ["key_", "name", "uuid"]})
        assert sorted((p["key_"], p["name"], p["uuid"]) for p in prototypes) == sorted(
            (p["key"], p["name"], p["uuid"]) for p in rule["item_prototypes"])
    triggers = imported_triggers(zabbix, "triggerprototype.get", found["templateid"])
    assert triggers == expected_triggers(trigger_prototypes(template))
    assert len(triggers) >= 3  # a bot down, restarts by crash or hung, a backlog


def test_a_trigger_on_a_missing_item_key_is_refused_and_changes_nothing(zabbix, imported, source, template):
    """The import validates what it reads: the same template with one more trigger, on a key it lacks."""
    broken = yaml.safe_load(source)
    (copied,) = broken["zabbix_export"]["templates"]
    added = {"uuid": uuid.uuid4().hex, "name": "Botfleet: on a missing item", "priority": "HIGH",
             "expression": f"last(/{template['template']}/{MISSING_KEY})=0"}
    first = copied["items"][0]
    first["triggers"] = copy.deepcopy(first.get("triggers", [])) + [added]
    answer = import_template(zabbix, yaml.safe_dump(broken, sort_keys=False))
    assert "result" not in answer, answer
    assert answer["error"]["data"] == (
        f'Incorrect item key "{MISSING_KEY}" provided for trigger expression on "{template["template"]}".')
    names = [t["description"] for t in zabbix.call("trigger.get", {"templateids": imported[1][0]["templateid"],
                                                                    "output": ["description"]})]
    assert sorted(names) == sorted(t["name"] for t in item_triggers(template))


# -- the userparameters, through a real agent --------------------------------------------------------


def userparameters() -> dict:
    lines = [line for line in USERPARAMETER_FILE.read_text().splitlines() if line.startswith("UserParameter=")]
    return dict(line.removeprefix("UserParameter=").split(",", 1) for line in lines)


def agent_value(folder: Path, fleet, key) -> str:
    """What `zabbix_agentd -t KEY` gets from our userparameter file, run the way its comments say: this
    checkout's botfleet in place of /opt/botfleet's, told the config and the database by the environment,
    from a working directory that is not the project's."""
    botfleet = Path(sys.executable).parent / "botfleet"
    assert botfleet.exists(), f"{botfleet}: botfleet is not installed in the test's environment (make install)"
    text = USERPARAMETER_FILE.read_text()
    assert INSTALLED_BOTFLEET in text
    (folder / "userparameter_botfleet.conf").write_text(text.replace(INSTALLED_BOTFLEET, str(botfleet)))
    (folder / "zabbix_agentd.conf").write_text(
        f"LogType=console\nPidFile={folder / 'zabbix_agentd.pid'}\nTimeout=30\n"
        f"Include={folder / 'userparameter_botfleet.conf'}\n")
    env = child_env(fleet.db_url, {"BOTFLEET_CONFIG": str(fleet.config_dir)})
    result = subprocess.run([str(AGENTD), "-c", str(folder / "zabbix_agentd.conf"), "-t", key], cwd=folder,
                            env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result
    answer = AGENT_ANSWER.fullmatch(result.stdout)
    assert answer and answer["key"] == key and answer["kind"] == "t", result.stdout  # t: text, m: not supported
    return answer["value"]


@pytest.fixture(scope="module")
def agent_folder(tmp_path_factory):
    if not AGENTD.exists():
        pytest.skip(f"the userparameter test needs {AGENTD} (zabbix-agent)")
    return tmp_path_factory.mktemp("zabbix-agent")


@pytest.mark.process_faults
def test_the_agent_runs_every_userparameter_against_the_shipped_fleet(agent_folder, shipped):
    values = {key: agent_value(agent_folder, shipped, key) for key in userparameters()}
    assert set(values) == {"botfleet.check", "botfleet.discovery"}, "a new userparameter needs its check here"
    assert values["botfleet.check"].startswith("OK"), values["botfleet.check"]
    discovered = json.loads(values["botfleet.discovery"])["data"]
    assert sorted(row["{#BOT}"] for row in discovered) == sorted(shipped.config.bots)
    assert all(row["{#METASERVICE}"] and row["{#TICKET_TYPE}"] and row["{#STATE}"] for row in discovered)
