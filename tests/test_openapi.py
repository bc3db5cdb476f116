"""A property-based run of the API's own OpenAPI description (schemathesis) against the live `botfleet api
run` process on a real database: for every operation, generated requests, valid and not, must never
get a 5xx, and every answer must fit what /openapi.json says (status, content type, headers, body)."""

import shutil

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from common.access.tokens import create_token
from common.config.load import load
from common.people import directory
from common.store.connect import connect
from common.store.sync import sync_config
from tests.conftest import free_port, scratch_database, write_config
from tests.harness import ROOT, BotProcesses, wait_answering
from tests.test_jobs import JOB_TYPE
from tests.test_workers import EXTERNAL, GEN_TYPE

pytestmark = pytest.mark.processes

EXAMPLES_PER_OPERATION = 40
# No 5xx, and nothing the description does not say: these, not schemathesis's stateful or auth checks
# (the API answers 404 for a ticket that does not exist and 409 for a move its graph forbids, both as
# described, which a check that wants 2xx for every schema-valid body would call a failure).
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_headers_conformance,
          response_schema_conformance]


@pytest.fixture(scope="module")
def live_api(server_url, template_db, tmp_path_factory):
    folder = tmp_path_factory.mktemp("openapi")
    port = free_port()
    config_dir = write_config(folder / "config", types={"testms/job": JOB_TYPE, "gen/site": GEN_TYPE},
                              bots={"gen-site-1-generating": EXTERNAL},
                              fleet_extra=f"api:\n  listen: 127.0.0.1:{port}\njobs:\n  type: testms/job\n")
    shutil.copytree(ROOT / "config" / "status_models", config_dir / "status_models")  # statusek creates succeed
    processes = BotProcesses(folder)
    with scratch_database(server_url, "botfleet_openapi", template_db) as db_url:
        with connect(db_url, autocommit=True) as conn:
            sync_config(conn, load(config_dir))
            directory.add_user(conn, "bob")
            directory.add_group(conn, "testers", ["bob"])
            token = create_token(conn, "schemathesis", "read,submit,update,admin,work")
        server = processes.spawn("api", ["api", "run"], config_dir, db_url)
        base_url = f"http://127.0.0.1:{port}"
        wait_answering(server, base_url)
        try:
            yield base_url, token, server
        finally:
            processes.stop_all()


def operations(base_url):
    schema = schemathesis.openapi.from_url(base_url + "/openapi.json")
    return [result.ok() for result in schema.get_all_operations()]


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=lambda m: m.value)
def test_every_answer_fits_the_description_and_none_is_a_server_error(live_api, mode):
    base_url, token, server = live_api
    found = operations(base_url)
    assert len(found) >= 15, [op.label for op in found]
    for operation in found:
        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        def run(case):
            case.call_and_validate(base_url=base_url, headers={"Authorization": f"Bearer {token}"}, checks=CHECKS)
        try:
            run()
        except Exception as exc:
            raise AssertionError(f"{mode.value} {operation.label}: {exc}") from exc
        assert server.poll() is None, f"the API process died during {operation.label}"


def test_every_request_body_in_the_description_has_an_example(live_api):
    base_url, _, _ = live_api
    description = httpx.get(base_url + "/openapi.json").json()
    components = description["components"]["schemas"]
    bodies = {}
    for path, methods in description["paths"].items():
        for method, operation in methods.items():
            if "requestBody" in operation:
                schema = operation["requestBody"]["content"]["application/json"]["schema"]
                # An optional body is anyOf the model and null.
                ref = schema.get("$ref") or next(s["$ref"] for s in schema["anyOf"] if "$ref" in s)
                bodies[f"{method.upper()} {path}"] = components[ref.rsplit("/", 1)[1]]
    assert len(bodies) >= 8, sorted(bodies)
    assert [name for name, schema in bodies.items() if not schema.get("examples")] == []
