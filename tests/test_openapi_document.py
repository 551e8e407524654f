"""The OpenAPI document encodes the API contract: valid 3.1, endpoints, bounds, headers, links."""

from __future__ import annotations

import copy
import json
import re
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from openapi_spec_validator import validate

Doc = dict[str, Any]

#: Every operation of docs/api-contract.md (plus the worker-protocol detail of INTERFACES.md).
CONTRACT_OPERATIONS = {
    ("post", "/api/v1/auth/register"),
    ("post", "/api/v1/auth/login"),
    ("post", "/api/v1/auth/refresh"),
    ("post", "/api/v1/auth/logout"),
    ("get", "/api/v1/auth/validate"),
    ("post", "/api/v1/api-keys"),
    ("get", "/api/v1/api-keys"),
    ("delete", "/api/v1/api-keys/{id}"),
    ("post", "/api/v1/queues"),
    ("get", "/api/v1/queues"),
    ("get", "/api/v1/queues/{name}"),
    ("put", "/api/v1/queues/{name}"),
    ("delete", "/api/v1/queues/{name}"),
    ("get", "/api/v1/queues/{name}/stats"),
    ("post", "/api/v1/queues/{name}/pause"),
    ("post", "/api/v1/queues/{name}/resume"),
    ("post", "/api/v1/jobs"),
    ("post", "/api/v1/jobs/batch"),
    ("get", "/api/v1/jobs"),
    ("get", "/api/v1/jobs/{id}"),
    ("post", "/api/v1/jobs/{id}/cancel"),
    ("post", "/api/v1/jobs/{id}/retry"),
    ("post", "/api/v1/jobs/{id}/complete"),
    ("post", "/api/v1/jobs/{id}/fail"),
    ("post", "/api/v1/workers"),
    ("get", "/api/v1/workers"),
    ("post", "/api/v1/workers/{id}/heartbeat"),
    ("post", "/api/v1/workers/{id}/lease"),
    ("post", "/api/v1/workers/{id}/ack"),
    ("get", "/health"),
    ("get", "/ready"),
    ("get", "/metrics"),
    ("get", "/openapi.json"),
}
PUBLIC = {
    "/api/v1/auth/register",
    "/api/v1/auth/login",
    "/api/v1/auth/refresh",
    "/health",
    "/ready",
    "/metrics",
    "/openapi.json",
}
HTTP_METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}


@pytest.fixture(scope="module")
def doc() -> Doc:
    text = resources.files("reference_server").joinpath("openapi.json").read_text("utf-8")
    loaded: Doc = json.loads(text)
    return loaded


def operations(doc: Doc) -> dict[tuple[str, str], Doc]:
    return {
        (method, path): operation
        for path, item in doc["paths"].items()
        for method, operation in item.items()
        if method in HTTP_METHODS
    }


def resolve(doc: Doc, node: Doc) -> Doc:
    """Follow a local `$ref` (the document only uses local ones)."""
    while "$ref" in node:
        target: Any = doc
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def schema(doc: Doc, name: str) -> Doc:
    resolved: Doc = doc["components"]["schemas"][name]
    return resolved


def test_document_is_valid_openapi_3_1(doc: Doc) -> None:
    assert doc["openapi"].startswith("3.1.")
    validate(doc)  # raises on any violation of the OpenAPI 3.1 meta-schema


def test_schemathesis_loads_every_operation_and_link(doc: Doc) -> None:
    # schemathesis adds inferred links to the dict it is given: hand it a copy.
    loaded = schemathesis.openapi.from_dict(copy.deepcopy(doc))
    labels = [result.ok().label for result in loaded.get_all_operations()]
    assert len(labels) == len(CONTRACT_OPERATIONS)
    # Building the state machine resolves every link; a dangling one raises here.
    assert loaded.as_state_machine() is not None


def test_operations_are_exactly_the_contract(doc: Doc) -> None:
    assert set(operations(doc)) == CONTRACT_OPERATIONS


def test_operation_ids_are_unique(doc: Doc) -> None:
    ids = [operation["operationId"] for operation in operations(doc).values()]
    assert len(ids) == len(set(ids))


def test_public_operations_have_no_security_and_others_all_three_schemes(doc: Doc) -> None:
    schemes = set(doc["components"]["securitySchemes"])
    assert schemes == {"bearerJwt", "bearerApiKey", "apiKeyHeader"}
    for (_, path), operation in operations(doc).items():
        if path in PUBLIC:
            assert operation["security"] == [], path
        else:
            offered = {name for requirement in operation["security"] for name in requirement}
            assert offered == schemes, path
            assert "401" in operation["responses"], path


def test_every_response_declares_x_request_id_as_required(doc: Doc) -> None:
    for key, operation in operations(doc).items():
        for status, response in operation["responses"].items():
            header = resolve(doc, resolve(doc, response)["headers"]["X-Request-ID"])
            assert header["required"] is True, (key, status)


def test_authenticated_successes_require_rate_limit_headers(doc: Doc) -> None:
    for (method, path), operation in operations(doc).items():
        if path in PUBLIC:
            continue
        for status, response in operation["responses"].items():
            if status.startswith("2") or status == "429":
                headers = resolve(doc, response)["headers"]
                for name in ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"):
                    assert resolve(doc, headers[name])["required"] is True, (method, path, status)


def test_429_and_503_carry_retry_after(doc: Doc) -> None:
    for key, operation in operations(doc).items():
        for status in ("429", "503"):
            if status in operation["responses"]:
                headers = resolve(doc, operation["responses"][status])["headers"]
                assert "Retry-After" in headers, (key, status)


def test_error_responses_use_the_error_envelope_with_the_contract_code(doc: Doc) -> None:
    codes = {
        "400": {"VALIDATION_001"},
        "401": {"AUTH_001", "AUTH_002"},
        "403": {"PERM_001"},
        "404": {"RESOURCE_NOT_FOUND"},
        "409": {"RESOURCE_CONFLICT"},
        "413": {"PAYLOAD_TOO_LARGE"},
        "415": {"UNSUPPORTED_MEDIA_TYPE"},
        "429": {"RATE_LIMIT_EXCEEDED"},
        "503": {"SERVICE_UNAVAILABLE"},
    }
    seen: set[str] = set()
    for (_, path), operation in operations(doc).items():
        for status, response in operation["responses"].items():
            if status not in codes or path in ("/health", "/ready"):
                continue
            seen.add(status)
            body = resolve(doc, response)["content"]["application/json"]["schema"]
            envelope, specific = body["allOf"]
            assert envelope == {"$ref": "#/components/schemas/ErrorEnvelope"}
            code = specific["properties"]["error"]["properties"]["code"]
            assert set(code.get("enum", [code.get("const")])) == codes[status], (path, status)
    assert seen == set(codes)


def test_body_operations_document_400_413_415(doc: Doc) -> None:
    for key, operation in operations(doc).items():
        if "requestBody" in operation:
            assert {"400", "413", "415"} <= set(operation["responses"]), key


def test_request_bodies_forbid_unknown_fields(doc: Doc) -> None:
    for name, definition in doc["components"]["schemas"].items():
        if name.endswith("Request") or name == "QueueSettings":
            assert definition["additionalProperties"] is False, name


def test_contract_bounds(doc: Doc) -> None:
    job = schema(doc, "JobCreateRequest")["properties"]
    assert (job["priority"]["minimum"], job["priority"]["maximum"]) == (0, 9)
    assert (job["max_attempts"]["minimum"], job["max_attempts"]["maximum"]) == (1, 10)
    assert (job["job_type"]["minLength"], job["job_type"]["maxLength"]) == (1, 100)
    assert resolve(doc, job["payload"])["type"] == "object"
    assert set(schema(doc, "JobCreateRequest")["required"]) == {"queue_name", "job_type", "payload"}
    batch = schema(doc, "JobBatchRequest")["properties"]["jobs"]
    assert (batch["minItems"], batch["maxItems"]) == (1, 1000)
    lease = schema(doc, "LeaseRequest")["properties"]
    assert (lease["max_jobs"]["minimum"], lease["max_jobs"]["maximum"]) == (1, 100)
    assert (lease["wait_seconds"]["minimum"], lease["wait_seconds"]["maximum"]) == (0, 30)
    register = schema(doc, "RegisterRequest")["properties"]
    assert register["password"]["minLength"] == 8
    assert register["email"]["format"] == "email"
    queue = schema(doc, "QueueCreateRequest")["properties"]
    assert (queue["priority"]["minimum"], queue["priority"]["maximum"]) == (0, 9)
    limit = next(
        p for p in doc["paths"]["/api/v1/jobs"]["get"]["parameters"] if p["name"] == "limit"
    )
    assert (limit["schema"]["maximum"], limit["schema"]["default"]) == (100, 20)
    settings = schema(doc, "QueueSettings")["properties"]
    defaults = {name: value["default"] for name, value in settings.items()}
    assert defaults == {
        "max_attempts": 3,
        "timeout_seconds": 300,
        "initial_retry_delay_seconds": 1,
        "max_retry_delay_seconds": 300,
        "backoff_multiplier": 2.0,
        "retention_days": 30,
    }


def test_worker_protocol_bodies_require_worker_id(doc: Doc) -> None:
    assert "worker_id" in schema(doc, "JobCompleteRequest")["required"]
    assert set(schema(doc, "JobFailRequest")["required"]) == {"worker_id", "error_message"}
    leased = schema(doc, "LeaseResult")["properties"]["jobs"]["items"]
    assert leased == {"$ref": "#/components/schemas/Job"}


def test_job_record_has_every_contract_field(doc: Doc) -> None:
    fields = [
        "id",
        "queue_name",
        "job_type",
        "payload",
        "priority",
        "status",
        "attempt_count",
        "max_attempts",
        "scheduled_for",
        "lease_expires_at",
        "worker_id",
        "output",
        "error_message",
        "created_at",
        "updated_at",
        "completed_at",
    ]
    assert schema(doc, "Job")["required"] == fields
    assert resolve(doc, schema(doc, "JobStatus"))["enum"] == [
        "pending",
        "scheduled",
        "processing",
        "succeeded",
        "failed",
        "dead",
        "cancelled",
    ]


def test_links_cover_the_stateful_sequences(doc: Doc) -> None:
    def targets(path: str, method: str, status: str) -> set[str]:
        response = doc["paths"][path][method]["responses"][status]
        return {link["operationId"] for link in response.get("links", {}).values()}

    assert "login" in targets("/api/v1/auth/register", "post", "201")
    assert "createQueue" in targets("/api/v1/auth/login", "post", "200")
    assert "submitJob" in targets("/api/v1/queues", "post", "201")
    assert {"getJob", "cancelJob"} <= targets("/api/v1/jobs", "post", "201")
    assert "cancelJob" in targets("/api/v1/jobs/{id}", "get", "200")
    assert "leaseJobs" in targets("/api/v1/workers", "post", "201")
    assert {"completeJob", "failJob"} <= targets("/api/v1/workers/{id}/lease", "post", "200")


def _template(path: str) -> str:
    """A path with its parameter names blanked, so `/jobs/<uuid:job_id>` meets `/jobs/{id}`."""
    return re.sub(r"<[^>]+>|\{[^}]+\}", "{}", path)


def test_server_routes_are_exactly_the_documented_operations(doc: Doc) -> None:
    """The app's routing table and the document's operations differ in neither direction."""
    from reference_server.app import create_app
    from reference_server.config import Settings

    app = create_app(Settings(APP_ENVIRONMENT="test", METRICS_ENABLED=True))
    # Quart adds a static route by default; it serves nothing while the folder does not exist.
    static_served = app.static_folder is not None and Path(app.static_folder).is_dir()
    served = {
        (method.lower(), _template(rule.rule))
        for rule in app.url_map.iter_rules()
        if rule.endpoint != "static" or static_served
        for method in rule.methods or ()
        if method not in {"HEAD", "OPTIONS"}
    }
    documented = {(method, _template(path)) for method, path in operations(doc)}
    assert sorted(served - documented) == [], "served but not documented"
    assert sorted(documented - served) == [], "documented but not served"
