"""The Zabbix template in zabbix/: a well-formed 6.0 export that reads only what the watchdog exports.

The first half needs no database: it checks the export's structure and its internal references
(keys, macros, dependencies), which a Zabbix import would otherwise be the first to reject. The
second half scrapes a real watchdog exposition (watchdog.collector.scrape_text) computed from a
database, and checks that every metric, label and pattern the template uses finds what it expects.
"""

import json
import operator
import os
import re
import subprocess

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from common.config.load import load
from common.tickets.create import create_ticket
from tests.conftest import BOTFLEET, ROOT

TEMPLATE_FILE = ROOT / "zabbix" / "template_botfleet.yaml"
USERPARAMETER_FILE = ROOT / "zabbix" / "userparameter_botfleet.conf"
TEMPLATE_NAME = "Botfleet by HTTP"
MASTER_URL = "http://{$BOTFLEET.WATCHDOG.HOST}:{$BOTFLEET.WATCHDOG.PORT}/metrics"
LLD_MACRO_PATHS = {"{#BOT}": "$.labels.bot", "{#METASERVICE}": "$.labels.metaservice",
                   "{#TICKET_TYPE}": "$.labels.ticket_type", "{#STATE}": "$.labels.state"}

# The watchdog's metrics contract, as sample names in the exposition (counters end in _total,
# histograms are _bucket/_sum/_count). The template may read nothing else.
HISTOGRAMS = ("botfleet_hop_latency_seconds", "botfleet_handler_duration_seconds")
CONTRACT = {
    "botfleet_build_info", "botfleet_database_up", "botfleet_watchdog_last_check_timestamp_seconds",
    "botfleet_watchdog_leader", "botfleet_watchdog_restarts_total", "botfleet_bot_up", "botfleet_bot_disabled",
    "botfleet_bot_last_heartbeat_timestamp_seconds", "botfleet_bot_processes", "botfleet_tickets_open",
    "botfleet_tickets_oldest_open_timestamp_seconds", "botfleet_transitions_total",
    "botfleet_handler_failures_total", "botfleet_error_tickets_total", "botfleet_timeouts_total",
    "botfleet_reminders_total",
} | {f"{name}{suffix}" for name in HISTOGRAMS for suffix in ("_bucket", "_sum", "_count")}

METRIC_NAME = re.compile(r"botfleet_[a-z_]+")
USER_MACRO = re.compile(r"\{\$([A-Z0-9_.]+)")  # the name only; a context such as :"{#BOT}" may follow
LLD_MACRO = re.compile(r"\{#[A-Z0-9_.]+\}")
ITEM_REFERENCE = re.compile(r"\(/([^/]+)/([^,)]+(?:\[[^\]]*\])?)")  # function(/host/key,...
# The pattern forms the template uses: a metric name and label="value" or label=~"regex" conditions, nothing
# fancier, so that the small matcher below reads them the way Zabbix does.
PATTERN = re.compile(r'(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>\w+=~?"[^"]*"(?:,\w+=~?"[^"]*")*)\})?')
LABEL = re.compile(r'(\w+)(=~?)"([^"]*)"')


# -- reading the template --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def export():
    return yaml.safe_load(TEMPLATE_FILE.read_text())["zabbix_export"]


@pytest.fixture(scope="module")
def template(export):
    (only,) = export["templates"]
    return only


def rules(template):
    return template.get("discovery_rules", [])


def prototypes(template):
    return [p for rule in rules(template) for p in rule.get("item_prototypes", [])]


def entities(template):
    """Items, item prototypes and discovery rules: everything with a key and preprocessing."""
    return template.get("items", []) + prototypes(template) + rules(template)


def triggers(export, template):
    found = list(export.get("triggers", []))
    for item in template.get("items", []):
        found += item.get("triggers", [])
    for proto in prototypes(template):
        found += proto.get("trigger_prototypes", [])
    for rule in rules(template):
        found += rule.get("trigger_prototypes", [])
    return found


def steps(entity, kind=None):
    return [s for s in entity.get("preprocessing", []) if kind is None or s["type"] == kind]


def strings(node):
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from strings(value)


def uuids(node):
    if isinstance(node, dict):
        if "uuid" in node:
            yield node["uuid"]
        for value in node.values():
            yield from uuids(value)
    elif isinstance(node, list):
        for value in node:
            yield from uuids(value)


def master(template):
    (item,) = [i for i in template["items"] if i["type"] == "HTTP_AGENT"]
    return item


def macro_defaults(template):
    return {m["macro"]: m.get("value", "") for m in template.get("macros", [])}


def referenced_metrics(template):
    """Every botfleet_* name in a preprocessing parameter or a key."""
    names = set()
    for entity in entities(template):
        names.update(METRIC_NAME.findall(entity["key"]))
        for step in steps(entity):
            for parameter in step.get("parameters", []):
                names.update(METRIC_NAME.findall(parameter))
    return names


def seconds(duration: str) -> int:
    number, unit = re.fullmatch(r"(\d+)([smhdw]?)", duration).groups()
    return int(number) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[unit]


# -- the export on its own ---------------------------------------------------------------------------


def test_is_a_zabbix_6_0_export_of_one_template(export, template):
    """6.0 (Debian 12's) refuses any later version number; 6.2 to 7.0 convert a 6.0 file on import."""
    assert export["version"] == "6.0"
    assert "template_groups" not in export, "6.0 names the template's groups in groups:"
    assert template["template"] == template["name"] == TEMPLATE_NAME
    group_names = {g["name"] for g in export["groups"]}
    assert template["groups"] and {g["name"] for g in template["groups"]} <= group_names


def test_every_uuid_is_32_hex_and_unique(export):
    found = list(uuids(export))
    assert len(found) > 10
    assert [u for u in found if not re.fullmatch(r"[0-9a-f]{32}", u)] == []
    assert len(found) == len(set(found)), "a uuid is used twice"


def test_every_entity_a_re_import_matches_has_a_uuid(export, template):
    """6.0 matches templates, groups, items, prototypes, triggers, discovery rules, value maps and graphs
    by uuid, and refuses an import that lacks one."""
    def lacking(kind, found):
        return [f"{kind} {e.get('name', e.get('key'))}" for e in found if "uuid" not in e]
    missing = lacking("group", export["groups"]) + lacking("template", [template])
    missing += lacking("item", template.get("items", [])) + lacking("discovery rule", rules(template))
    missing += lacking("item prototype", prototypes(template)) + lacking("trigger", triggers(export, template))
    missing += lacking("value map", template.get("valuemaps", [])) + lacking("graph", export.get("graphs", []))
    missing += lacking("graph prototype", [g for rule in rules(template) for g in rule.get("graph_prototypes", [])])
    assert missing == []


def test_master_item_reads_metrics_through_the_host_and_port_macros(template):
    item = master(template)
    assert item["url"] == MASTER_URL
    assert item["value_type"] == "TEXT"
    assert seconds(item["history"]) <= 86400, "the raw text is only an input; keep its history 0 or short"
    # The macro defaults are the watchdog's default listen address, as the shipped fleet.yaml sets it.
    shipped = load(ROOT / "config").watchdog
    defaults = macro_defaults(template)
    assert (defaults["{$BOTFLEET.WATCHDOG.HOST}"], defaults["{$BOTFLEET.WATCHDOG.PORT}"]) == (
        shipped.host, str(shipped.port)) == ("127.0.0.1", "9108")


def test_dependent_items_and_discovery_hang_off_the_master_item(template):
    dependent = [e for e in entities(template) if e["type"] == "DEPENDENT"]
    assert len(dependent) >= 10
    assert {e["master_item"]["key"] for e in dependent} == {master(template)["key"]}
    keys = [e["key"] for e in entities(template)]
    assert len(keys) == len(set(keys)), "a key is used twice"


def test_fleet_wide_items_read_their_metric_with_a_prometheus_pattern(template):
    read = {step["parameters"][0] for item in template["items"] for step in steps(item, "PROMETHEUS_PATTERN")}
    assert {"botfleet_database_up", "botfleet_watchdog_last_check_timestamp_seconds", "botfleet_watchdog_leader",
            "botfleet_build_info"} <= read


def test_discovery_rule_finds_bots_in_bot_up_with_the_four_lld_macros(template):
    (rule,) = rules(template)
    assert rule["type"] == "DEPENDENT"
    first = rule["preprocessing"][0]
    assert (first["type"], first["parameters"]) == ("PROMETHEUS_TO_JSON", ["botfleet_bot_up"])
    assert {m["lld_macro"]: m["path"] for m in rule["lld_macro_paths"]} == LLD_MACRO_PATHS


def test_item_prototypes_cover_the_bot_and_use_only_discovered_macros(template):
    read = {}
    for proto in prototypes(template):
        assert "{#BOT}" in proto["key"], f"{proto['key']} would collide between bots"
        used = set(LLD_MACRO.findall(" ".join(strings(proto))))
        assert used <= set(LLD_MACRO_PATHS), f"{proto['key']} uses undiscovered macros {used - set(LLD_MACRO_PATHS)}"
        for step in steps(proto, "PROMETHEUS_PATTERN"):
            read[PATTERN.fullmatch(step["parameters"][0])["name"]] = proto
    assert {"botfleet_bot_up", "botfleet_bot_last_heartbeat_timestamp_seconds", "botfleet_bot_processes",
            "botfleet_transitions_total", "botfleet_handler_failures_total", "botfleet_tickets_open"} <= set(read)
    assert [s["type"] for s in steps(read["botfleet_transitions_total"])] == ["PROMETHEUS_PATTERN", "CHANGE_PER_SECOND"]
    backlog = read["botfleet_tickets_open"]["preprocessing"][0]["parameters"][0]
    assert LABEL.findall(backlog) == [("metaservice", "=", "{#METASERVICE}"), ("ticket_type", "=", "{#TICKET_TYPE}"),
                                      ("state", "=", "{#STATE}")]


def test_preprocessing_parameters_are_lists_of_strings_zabbix_can_parse(template):
    for entity in entities(template):
        for step in steps(entity):
            parameters = step.get("parameters", [])
            assert isinstance(parameters, list) and all(isinstance(p, str) for p in parameters), (entity["key"], step)
            if step["type"] == "PROMETHEUS_PATTERN":
                pattern, request, output = parameters  # 6.0.14 (Debian 12's) and later take exactly three
                assert PATTERN.fullmatch(pattern), pattern
                assert request in ("value", "label", "function")
                assert (output == "") == (request == "value"), "value takes no third parameter, the others need one"
                assert request != "function" or output in ("sum", "min", "max", "avg", "count")
            if step["type"] == "PROMETHEUS_TO_JSON":
                assert len(parameters) == 1 and PATTERN.fullmatch(parameters[0])
            if "error_handler" in step:
                assert step["error_handler"] in ("DISCARD_VALUE", "CUSTOM_VALUE", "CUSTOM_ERROR")


def test_template_reads_only_metrics_of_the_watchdog_contract(template):
    read = referenced_metrics(template)
    assert read - CONTRACT == set()
    assert {"botfleet_bot_up", "botfleet_bot_disabled", "botfleet_tickets_open"} <= read


def test_triggers_refer_to_items_and_macros_of_this_template(export, template):
    keys = {e["key"] for e in template.get("items", []) + prototypes(template)}
    defined = {USER_MACRO.match(m).group(1) for m in macro_defaults(template)}
    for trigger in triggers(export, template):
        expressions = [trigger["expression"], trigger.get("recovery_expression", "")]
        expressions += [d["expression"] for d in trigger.get("dependencies", [])]
        for expression in filter(None, expressions):
            assert ITEM_REFERENCE.findall(expression), f"{trigger['name']}: no item reference in {expression}"
            for host, key in ITEM_REFERENCE.findall(expression):
                assert (host, key) in {(TEMPLATE_NAME, k) for k in keys}, f"{trigger['name']}: /{host}/{key}"
    used = {name for text in strings(template) for name in USER_MACRO.findall(text)}
    assert used - defined == set(), "macros used but not defined in the template"


def test_trigger_dependencies_name_triggers_that_exist(export, template):
    known = {(t["name"], t["expression"]) for t in triggers(export, template)}
    for trigger in triggers(export, template):
        for dependency in trigger.get("dependencies", []):
            assert (dependency["name"], dependency["expression"]) in known, (trigger["name"], dependency)


def test_the_four_alerts_are_there(export, template):
    expressions = [t["expression"] for t in triggers(export, template)]

    def one(*needles):
        found = [e for e in expressions if all(n in e for n in needles)]
        assert len(found) == 1, f"expected one trigger with {needles}, found {found}"

    one("botfleet.bot.up[{#BOT}]", "=0", "botfleet.bot.disabled[{#BOT}])=0")  # a dead bot, not when disabled
    one("botfleet.watchdog.check_age", "{$BOTFLEET.WATCHDOG.STALE.MAX}", "nodata(")  # a stale watchdog
    one("last(/Botfleet by HTTP/botfleet.database.up)=0")  # the database
    one("min(/Botfleet by HTTP/botfleet.bot.backlog[{#BOT}]", "{$BOTFLEET.BACKLOG.MAX")  # a growing backlog
    assert macro_defaults(template)["{$BOTFLEET.BACKLOG.MAX}"] == "1000"


def test_userparameters_define_the_agent_keys_and_call_botfleet(template):
    lines = [line for line in USERPARAMETER_FILE.read_text().splitlines() if line.startswith("UserParameter=")]
    commands = dict(line[len("UserParameter="):].split(",", 1) for line in lines)
    assert set(commands) == {"botfleet.check", "botfleet.discovery"}
    assert commands["botfleet.check"].startswith("/opt/botfleet/.venv/bin/botfleet check")
    assert commands["botfleet.discovery"].startswith("/opt/botfleet/.venv/bin/botfleet zabbix discovery")
    agent_keys = {i["key"] for i in template["items"] if i["type"] in ("ZABBIX_PASSIVE", "ZABBIX_ACTIVE")}
    assert agent_keys <= set(commands)


# -- against a real exposition -----------------------------------------------------------------------


def exposition_names(families) -> set:
    """Sample names a scrape can show, including those of families that have no sample yet."""
    derived = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "summary": ("", "_sum", "_count"),
               "gaugehistogram": ("_bucket", "_gsum", "_gcount"), "info": ("_info",)}
    names = set()
    for family in families:
        names.update(sample.name for sample in family.samples)
        names.update(family.name + suffix for suffix in derived.get(family.type, ("",)))
    return names


def matching(samples, pattern):
    """The samples a Zabbix Prometheus pattern of the form name{label="value",...} selects."""
    parsed = PATTERN.fullmatch(pattern)
    wanted = LABEL.findall(parsed["labels"] or "")

    def holds(labels, name, op, value):
        return labels.get(name) == value if op == "=" else re.search(value, labels.get(name, "")) is not None
    return [s for s in samples if s.name == parsed["name"] and all(holds(s.labels, *w) for w in wanted)]


def substitute(text, macros):
    for macro, value in macros.items():
        text = text.replace(macro, value)
    return text


def discovered(samples):
    """What the discovery rule makes of botfleet_bot_up: one macro set per bot."""
    return [{macro: sample.labels.get(path.removeprefix("$.labels.")) for macro, path in LLD_MACRO_PATHS.items()}
            for sample in samples if sample.name == "botfleet_bot_up"]


def scrape(db_url, config):
    """The families and samples of the watchdog's own exposition code run against `db_url`."""
    from watchdog.collector import scrape_text

    families = list(text_string_to_metric_families(scrape_text(db_url)))
    return families, [sample for family in families for sample in family.samples]


def test_every_metric_the_template_reads_is_exported(db_url, synced, template):
    families, _ = scrape(db_url, synced)
    missing = referenced_metrics(template) - exposition_names(families)
    assert missing == set(), f"the template reads metrics /metrics does not have: {sorted(missing)}"


def test_discovery_finds_every_configured_bot_with_all_its_labels(db_url, synced):
    _, samples = scrape(db_url, synced)
    bots = discovered(samples)
    assert [b for b in bots if None in b.values()] == [], "a bot_up series lacks a label the LLD macros read"
    assert sorted(b["{#BOT}"] for b in bots) == sorted(synced.bots)


def test_each_pattern_finds_one_series_and_never_several(db_url, synced, template):
    """Zabbix fails a Prometheus pattern that matches several lines, and one that matches none unless the
    step has an error handler (for series the watchdog exports only sometimes)."""
    _, samples = scrape(db_url, synced)
    for item in template["items"]:
        for step in steps(item, "PROMETHEUS_PATTERN"):
            # At most one: the last-check series is absent until a watchdog has run, on purpose.
            assert len(matching(samples, step["parameters"][0])) <= 1, step["parameters"][0]
    bots = discovered(samples)
    assert bots
    for macros in bots:
        for proto in prototypes(template):
            for step in steps(proto, "PROMETHEUS_PATTERN"):
                pattern, request, _ = step["parameters"]
                found = matching(samples, substitute(pattern, macros))
                if request == "function":
                    continue  # aggregates any number of lines
                if "error_handler" in step:
                    assert len(found) <= 1, (macros["{#BOT}"], pattern, found)
                else:
                    assert len(found) == 1, (macros["{#BOT}"], pattern, found)


def test_backlog_item_counts_the_open_tickets_of_its_bots_state(db_url, synced, conn, template):
    create_ticket(conn, synced, "testms", "pipe", {}, creator="test")
    _, samples = scrape(db_url, synced)
    (macros,) = [b for b in discovered(samples) if b["{#BOT}"] == "testms-pipe-1-first"]
    (backlog,) = [p for p in prototypes(template) if p["key"].startswith("botfleet.bot.backlog[")]
    pattern = substitute(steps(backlog, "PROMETHEUS_PATTERN")[0]["parameters"][0], macros)
    assert [s.value for s in matching(samples, pattern)] == [1.0]


def test_the_restart_alert_counts_crashes_and_hangs_and_never_an_operators_restarts(db_url, synced, conn, template):
    bot = "testms-pipe-1-first"
    for reason, restarts in (("crash", 2), ("hung", 3), ("operator", 7), ("fatal", 11), ("exited", 13)):
        conn.execute("INSERT INTO watchdog_restart_totals (bot, reason, restarts) VALUES (%s, %s, %s)",
                     (bot, reason, restarts))
    _, samples = scrape(db_url, synced)
    (macros,) = [b for b in discovered(samples) if b["{#BOT}"] == bot]
    (item,) = [p for p in prototypes(template) if p["key"].startswith("botfleet.bot.restarts[")]
    pattern, request, function = steps(item, "PROMETHEUS_PATTERN")[0]["parameters"]
    assert (request, function) == ("function", "sum")
    assert sum(s.value for s in matching(samples, substitute(pattern, macros))) == 2 + 3
    (trigger,) = item["trigger_prototypes"]
    assert "botfleet.bot.restarts[{#BOT}]" in trigger["expression"]


def test_agent_discovery_gives_the_same_bots_and_macros_as_the_metrics(db_url, synced, config_dir):
    result = subprocess.run([*BOTFLEET, "--config", str(config_dir), "zabbix", "discovery"], cwd=ROOT,
                            env={**os.environ, "DATABASE_URL": db_url}, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    from_agent = [{m: row[m] for m in LLD_MACRO_PATHS} for row in json.loads(result.stdout)["data"]]
    _, samples = scrape(db_url, synced)
    by_bot = operator.itemgetter("{#BOT}")
    assert sorted(from_agent, key=by_bot) == sorted(discovered(samples), key=by_bot)
