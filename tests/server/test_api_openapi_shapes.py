"""Every answer of a full API session matches the response the OpenAPI document declares."""

from __future__ import annotations

import json
import re
from importlib import resources
from typing import Any

import jsonschema
from api_support import Api, register, running_app

DOCUMENT: dict[str, Any] = json.loads(
    resources.files("reference_server").joinpath("openapi.json").read_text()
)


def _pointer(*parts: str) -> str:
    return "#/" + "/".join(p.replace("~", "~0").replace("/", "~1") for p in parts)


def _template(path: str) -> str:
    for template in DOCUMENT["paths"]:
        pattern = "^" + re.sub(r"\{[^}]+\}", "[^/]+", template) + "$"
        if re.match(pattern, path):
            return template
    raise AssertionError(f"{path} is not in the OpenAPI document")


def check(method: str, path: str, response: Any, body: bytes) -> None:
    """The status is documented for the operation, and a JSON body matches its schema."""
    template = _template(path.split("?")[0])
    operation = DOCUMENT["paths"][template][method.lower()]
    status = str(response.status_code)
    assert status in operation["responses"], f"{method} {template}: {status} undocumented"
    declared = operation["responses"][status]
    parts = ["paths", template, method.lower(), "responses", status]
    if "$ref" in declared:
        name = declared["$ref"].rsplit("/", 1)[1]
        declared = DOCUMENT["components"]["responses"][name]
        parts = ["components", "responses", name]
    if "content" not in declared or not body:
        assert not body, f"{method} {template} {status}: body not documented"
        return
    media = response.content_type.split(";")[0]
    assert media in declared["content"], f"{method} {template} {status}: {media} undocumented"
    if media != "application/json":
        return
    schema = {**DOCUMENT, "$ref": _pointer(*parts, "content", "application/json", "schema")}
    jsonschema.Draft202012Validator(schema).validate(json.loads(body))


class CheckedApi:
    """The test client, checking each answer against the document as it comes."""

    def __init__(self, api: Api) -> None:
        self.api = api
        self.checked = 0

    async def call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = await self.api.request(method, path, **kwargs)
        body = await response.get_data()
        check(method, path, response, body)
        self.checked += 1
        return json.loads(body) if response.content_type == "application/json" else None


async def test_a_full_session_matches_the_document(database_url: str, redis_url: str) -> None:
    job = {"queue_name": "default", "job_type": "t", "payload": {"n": 1}, "priority": 2}
    async with running_app(database_url, redis_url) as raw:
        api = CheckedApi(raw)
        account = await register(raw)
        t = account["access_token"]
        await api.call("GET", "/health")
        await api.call("GET", "/ready")
        await api.call("GET", "/api/v1/auth/validate", token=t)
        await api.call("GET", "/api/v1/auth/validate")
        key = (await api.call("POST", "/api/v1/api-keys", token=t,
                              json={"name": "k", "permissions": ["job:read"]}))["data"]
        await api.call("GET", "/api/v1/api-keys", token=t)
        await api.call("DELETE", f"/api/v1/api-keys/{key['id']}", token=t)
        await api.call("POST", "/api/v1/queues", token=t, json={"name": "q1"})
        await api.call("POST", "/api/v1/queues", token=t, json={"name": "q1"})
        await api.call("GET", "/api/v1/queues", token=t)
        await api.call("GET", "/api/v1/queues/q1", token=t)
        await api.call("PUT", "/api/v1/queues/q1", token=t, json={"priority": 4})
        await api.call("GET", "/api/v1/queues/q1/stats", token=t)
        await api.call("POST", "/api/v1/queues/q1/pause", token=t)
        await api.call("POST", "/api/v1/queues/q1/resume", token=t)
        await api.call("DELETE", "/api/v1/queues/q1", token=t)
        await api.call("GET", "/api/v1/queues/q1", token=t)
        created = (await api.call("POST", "/api/v1/jobs", token=t, json=job))["data"]
        await api.call("POST", "/api/v1/jobs", token=t, json={**job, "priority": 12})
        await api.call("POST", "/api/v1/jobs", token=t, data=b"x",
                       headers={"Content-Type": "text/plain"})
        await api.call("POST", "/api/v1/jobs/batch", token=t, json={"jobs": [job, job]})
        await api.call("GET", "/api/v1/jobs?limit=1", token=t)
        await api.call("GET", f"/api/v1/jobs/{created['id']}", token=t)
        await api.call("POST", f"/api/v1/jobs/{created['id']}/retry", token=t)
        await api.call("POST", f"/api/v1/jobs/{created['id']}/cancel", token=t)
        worker = (await api.call("POST", "/api/v1/workers", token=t,
                                 json={"name": "w", "queues": ["default"],
                                       "max_concurrent_jobs": 3}))["data"]
        await api.call("GET", "/api/v1/workers", token=t)
        await api.call("POST", f"/api/v1/workers/{worker['id']}/heartbeat", token=t)
        await api.call("POST", "/api/v1/jobs", token=t, json=job)
        leased = (await api.call("POST", f"/api/v1/workers/{worker['id']}/lease", token=t,
                                 json={"max_jobs": 3}))["data"]["jobs"]
        first, second, third = leased
        await api.call("POST", f"/api/v1/workers/{worker['id']}/ack", token=t,
                       json={"results": [{"job_id": third["id"], "status": "succeeded"},
                                         {"job_id": first["id"], "status": "failed",
                                          "error_message": "x", "retryable": True},
                                         {"job_id": worker["id"], "status": "succeeded"}]})
        await api.call("POST", f"/api/v1/workers/{worker['id']}/ack", token=t,
                       json={"results": []})
        await api.call("POST", "/api/v1/jobs", token=t, json=job)
        [first] = (await api.call("POST", f"/api/v1/workers/{worker['id']}/lease", token=t,
                                  json={"max_jobs": 1}))["data"]["jobs"]
        await api.call("POST", f"/api/v1/jobs/{first['id']}/complete", token=t,
                       json={"worker_id": worker["id"], "output": {"r": 1}})
        await api.call("POST", f"/api/v1/jobs/{first['id']}/complete", token=t,
                       json={"worker_id": worker["id"]})
        await api.call("POST", f"/api/v1/jobs/{second['id']}/fail", token=t,
                       json={"worker_id": worker["id"], "error_message": "x"})
        pair = (await api.call("POST", "/api/v1/auth/refresh",
                               json={"refresh_token": account["refresh_token"]}))["data"]
        await api.call("POST", "/api/v1/auth/logout", token=pair["access_token"],
                       json={"refresh_token": pair["refresh_token"]})
        await api.call("POST", "/api/v1/auth/login",
                       json={"email": account["email"], "password": "wrong-password"})
        await api.call("GET", "/metrics")
    assert api.checked == 41
