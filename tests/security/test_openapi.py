"""The OpenAPI 3.1 document: generated, valid, complete, and a live server fuzzed against it with Schemathesis."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from openapi_spec_validator import validate
from schemathesis.specs.openapi.checks import positive_data_acceptance
from starlette.routing import Route

from ticker_service.api.openapi import document
from ticker_service.app import create_app
from ticker_service.settings import Settings

from ..support.processes import TIMEOUT, Service, ServiceFactory

# Pages and scripts, Prometheus, the reader streams: not API operations.
NOT_OPERATIONS = {"/", "/editor", "/admin", "/push.js", "/push-sw.js", "/metrics", "/v1/stream", "/v1/events"}


@pytest.fixture(scope="module")
def live(service_factory: ServiceFactory) -> Service:
    # Redis mode: every operation works there (the embedded mode answers the device API with 503, by design).
    return service_factory("redis", name="openapi")


@pytest.fixture(scope="module")
def api_schema(live: Service) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(f"{live.base_url}/openapi.json")


def test_document_is_valid_openapi_3_1_and_served(live: Service) -> None:
    """/openapi.json is a valid OpenAPI 3.1 document, equal to the one built from the code."""
    served = httpx.get(f"{live.base_url}/openapi.json", timeout=TIMEOUT).json()
    assert served["openapi"] == "3.1.0"
    validate(served)
    assert served["components"]["schemas"]["FlashIn"]["required"] == ["headline", "language", "category"]
    assert served["components"]["schemas"]["FlashIn"]["additionalProperties"] is False


def test_every_route_is_documented_and_nothing_else(tmp_path: Path) -> None:
    """The document's operations are exactly the app's HTTP routes (minus the page and the streams)."""
    app = create_app(Settings(data_dir=tmp_path))
    routes = {
        (route.path, method.lower())
        for route in app.routes
        if isinstance(route, Route) and route.path not in NOT_OPERATIONS and not route.path.startswith("/static/")
        for method in (route.methods or ()) - {"HEAD"}
    }
    paths: dict[str, dict[str, Any]] = document(Settings(data_dir=tmp_path))["paths"]
    documented = {(path, method) for path, ops in paths.items() for method in ops if method != "parameters"}
    assert routes == documented


CASES_PER_OPERATION = 25
# Not checked: that every schema-valid body is accepted. Headlines refuse Unicode control, private-use and
# unassigned characters, which JSON Schema cannot say; such a body gets a 422, which is right.


def test_live_api_against_its_schema(api_schema: schemathesis.BaseSchema, live: Service) -> None:
    """Schemathesis, bounded: generated requests, valid and not, to every operation of a live server. No 5xx,
    every response (status, content type, headers, body) matches the document, auth is enforced."""
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) == 22
    token = {"Authorization": f"Bearer {live.token}"}
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=CASES_PER_OPERATION, deadline=None, suppress_health_check=list(HealthCheck))
        def check(case: schemathesis.Case) -> None:
            case.call_and_validate(headers=token, excluded_checks=[positive_data_acceptance])

        check()
