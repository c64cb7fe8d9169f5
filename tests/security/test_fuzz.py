"""Stateful fuzzing of the live API in both modes: Schemathesis chains real calls (a flash is published, then read,
corrected and withdrawn; a device is registered, then changed and forgotten with its own secret) and checks every
response against the OpenAPI document. No 5xx, whatever the input.

The links are added to the served document here: they need Schemathesis' regex extractor to take the flash id
from ``Location``, which is not OpenAPI's own syntax. The rate limits are raised, so that the fuzzer is not answered
429 after a few dozen requests; everything else is the default.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi.checks import positive_data_acceptance

from ..support.processes import TIMEOUT, Service, ServiceFactory

STEPS = 12  # calls per scenario at most
SCENARIOS = 60  # per mode: every link is walked many times (POST → PATCH alone in about a third of them)
ROOMY = {
    "TICKER_PUBLISH_RATE_PER_MINUTE": "100000",
    "TICKER_FAILED_AUTH_PER_MINUTE": "100000",
    "TICKER_DEVICE_WRITES_PER_MINUTE": "100000",
}
# Schemathesis' own list of statuses that refuse invalid data, and 413: a body over the size limit is refused
# before it is read, whatever else is wrong with it.
CONFIG = SchemathesisConfig.from_dict(
    {
        "checks": {
            "negative_data_rejection": {
                "expected-statuses": [400, 401, 403, 404, 405, 406, 409, 413, 415, 422, 428, 429]
            }
        }
    }
)
FLASH = "/v1/flashes/{flash_id}"
DEVICE = "/v1/devices/{device_id}"


def _ref(path: str, method: str) -> str:
    return "#/paths/" + path.replace("~", "~0").replace("/", "~1") + "/" + method


def with_links(doc: dict[str, Any], *, devices: bool) -> dict[str, Any]:
    """The document with the links a client follows: from a published flash to its resource, and from a
    registered device to its resource (with the secret it was given)."""
    flash_links = {
        f"{method}Flash": {
            "operationRef": _ref(FLASH, method),
            "parameters": {"flash_id": "$response.header.Location#regex:/v1/flashes/(.+)"},
        }
        for method in ("get", "patch", "delete")
    }
    doc["paths"]["/v1/flashes"]["post"]["responses"]["201"]["links"] = flash_links
    if devices:
        doc["paths"]["/v1/devices"]["post"]["responses"]["201"]["links"] = {
            f"{method}Device": {
                "operationRef": _ref(DEVICE, method),
                "parameters": {
                    "device_id": "$response.body#/id",
                    "header.Authorization": "Bearer {$response.body#/secret}",
                },
            }
            for method in ("put", "delete")
        }
    else:
        # The embedded mode has no device registry; its document says these operations answer 503.
        for path in ("/v1/devices", DEVICE):
            del doc["paths"][path]
    return doc


@pytest.fixture(scope="module", params=["embedded", "redis"])
def live(request: pytest.FixtureRequest, service_factory: ServiceFactory) -> Service:
    return service_factory(request.param, name=f"fuzz-{request.param}", **ROOMY)


def test_stateful_fuzzing_finds_no_5xx_and_nothing_undocumented(live: Service) -> None:
    """Chained calls with generated bodies, valid and not, against a live server: every response is as documented
    (status, content type, headers, body), none is a 5xx, and a withdrawn or forgotten resource stays so."""
    doc = httpx.get(f"{live.base_url}/openapi.json", timeout=TIMEOUT).json()
    schema = schemathesis.openapi.from_dict(with_links(doc, devices=live.mode == "redis"), config=CONFIG)
    schema.config.update(base_url=live.base_url)
    editor = f"Bearer {live.token}"
    calls: dict[str, int] = {}
    statuses: dict[str, int] = {}

    class Machine(schema.as_state_machine()):  # type: ignore[misc]
        def get_call_kwargs(self, case: schemathesis.Case) -> dict[str, Any]:
            key = f"{case.method} {case.operation.path}"
            calls[key] = calls.get(key, 0) + 1
            # Device operations carry the device's secret from their link; everything else is the editor's.
            if case.operation.path == DEVICE and "Authorization" in (case.headers or {}):
                return {}
            return {"headers": {"Authorization": editor}}

        def validate_response(self, response: Any, case: schemathesis.Case, **kwargs: Any) -> None:
            # Not checked: that every schema-valid body is accepted. Headlines refuse Unicode control, private-use
            # and unassigned characters, which JSON Schema cannot say; such a body gets a 422, which is right.
            kwargs.pop("additional_checks", None)
            key = f"{case.method} {case.operation.path} {response.status_code}"
            statuses[key] = statuses.get(key, 0) + 1
            case.validate_response(response, excluded_checks=[positive_data_acceptance], transport_kwargs=kwargs)

    Machine.run(
        settings=settings(
            max_examples=SCENARIOS,
            stateful_step_count=STEPS,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,  # the same scenarios on every run: a failure in CI is one anyone can replay
        )
    )
    # The links were walked: flashes were read, corrected and withdrawn by the id their POST gave; in Redis mode,
    # devices were registered (DeviceIn's schema is one per platform, with its token rules and the taxonomy, so a
    # generated registration can be valid), then changed and forgotten with the secret their POST gave.
    assert statuses.get("POST /v1/flashes 201", 0) > 0, sorted(statuses.items())
    assert calls.get(f"PATCH {FLASH}", 0) > 0 and calls.get(f"DELETE {FLASH}", 0) > 0, sorted(statuses.items())
    print(f"\n{live.mode}: " + ", ".join(f"{k}: {v}" for k, v in sorted(statuses.items()) if "devices" in k))
    if live.mode == "redis":
        assert statuses.get("POST /v1/devices 201", 0) > 0, sorted(statuses.items())
        assert statuses.get(f"PUT {DEVICE} 200", 0) > 0, sorted(statuses.items())
        assert statuses.get(f"DELETE {DEVICE} 204", 0) + statuses.get(f"DELETE {DEVICE} 200", 0) > 0, sorted(
            statuses.items()
        )
