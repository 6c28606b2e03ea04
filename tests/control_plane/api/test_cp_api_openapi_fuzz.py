"""Schema-based fuzzing of the running control plane against its own /openapi.json.

What API users' tools assume: no 5xx, every status answered is documented (with the body it
documents), schema-valid requests are not rejected as invalid, undeclared methods get 405
with ``Allow``. Bounded: a few examples per operation, one real server on loopback.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from schemathesis import Case
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi import checks

from tests.control_plane.api.cp_api_helpers import (
    ADMIN_KEY,
    RunningControlPlane,
    make_settings,
    start_control_plane,
)

pytestmark = pytest.mark.integration

MAX_EXAMPLES = 8
CHECKS = [
    not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
    checks.positive_data_acceptance,
    checks.unsupported_method,
]
# Operations whose valid requests depend on data the schema cannot describe, so generated
# "valid" data is rightly refused (documented 4xx); every other check still applies to them.
NOT_POSITIVE_CHECKED = {
    # The body must hash to the sha256 in the path (content addressing).
    "PUT /v1/archives/{sha256}",
    # The same, for what the client uploaded under the upload id a plan handed out.
    "POST /v1/archives/{sha256}/uploads/{upload_id}/complete",
    # webhook_endpoint must be an http(s) URL whose host resolves to an allowed address.
    "POST /v1/models/{model_id}/deployments/{deployment_id}/async_requests",
}


@pytest.fixture(scope="module")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningControlPlane]:
    running, stop = start_control_plane(tmp_path_factory.mktemp("fuzz-state"))
    yield running
    stop()


def _openapi_document() -> dict[str, Any]:
    """The app's /openapi.json, built without serving (schemathesis needs it at collection);
    the running server's copy is checked to be the same below."""
    from control_plane.app import create_app

    with tempfile.TemporaryDirectory() as state_dir:
        document: dict[str, Any] = create_app(make_settings(Path(state_dir))).openapi()
    return document


OPENAPI = _openapi_document()
schema = schemathesis.openapi.from_dict(
    OPENAPI,
    config=SchemathesisConfig.from_dict(
        {
            "generation": {"max-examples": MAX_EXAMPLES},
            "phases": {"stateful": {"enabled": False}},
        }
    ),
)


def test_the_running_app_serves_this_document(control_plane: RunningControlPlane) -> None:
    assert httpx.get(f"{control_plane.url}/openapi.json").json() == OPENAPI


@schema.parametrize()
def test_api_answers_as_its_openapi_says(case: Case, control_plane: RunningControlPlane) -> None:
    selected = CHECKS
    if case.operation.label in NOT_POSITIVE_CHECKED:
        selected = [check for check in CHECKS if check is not checks.positive_data_acceptance]
    case.call_and_validate(
        base_url=control_plane.url,
        headers={"Authorization": f"Api-Key {ADMIN_KEY}"},
        checks=selected,
        timeout=30,
    )
