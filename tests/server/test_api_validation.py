"""Bad input: 400 with the offending fields, 415, 413; nothing half-written; never a 500."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

import asyncpg
import jsonschema
import pytest
from api_support import Api, error_code, register, running_app

JOB = {"queue_name": "default", "job_type": "test_job", "payload": {"k": "v"}, "priority": 5}


async def _submit(api: Api, token: str, **kwargs: Any) -> Any:
    return await api.post("/api/v1/jobs", token=token, **kwargs)


async def _fields(response: Any) -> set[str]:
    body = await response.get_json()
    assert body["error"]["code"] == "VALIDATION_001", body
    return {d["field"] for d in body["error"]["details"]}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"priority": 10}, "priority"),
        ({"priority": -1}, "priority"),
        ({"priority": "5"}, "priority"),
        ({"max_attempts": 0}, "max_attempts"),
        ({"max_attempts": 11}, "max_attempts"),
        ({"job_type": ""}, "job_type"),
        ({"job_type": "x" * 101}, "job_type"),
        ({"payload": [1, 2]}, "payload"),
        ({"scheduled_for": "tomorrow"}, "scheduled_for"),
        ({"colour": "red"}, "colour"),
    ],
)
async def test_schema_violations_name_the_field(
    database_url: str, redis_url: str, change: dict[str, Any], field: str
) -> None:
    async with running_app(database_url, redis_url) as api:
        account = await register(api)
        response = await _submit(api, account["access_token"], json={**JOB, **change})
    assert response.status_code == 400
    assert field in await _fields(response)


async def test_malformed_json_and_missing_fields(database_url: str, redis_url: str) -> None:
    async with running_app(database_url, redis_url) as api:
        token = (await register(api))["access_token"]
        broken = await _submit(
            api, token, data=b'{"queue_name": ', headers={"Content-Type": "application/json"}
        )
        missing = await _submit(api, token, json={"queue_name": "default"})
        not_object = await _submit(api, token, json=[JOB])
    assert broken.status_code == 400
    assert await _fields(broken) == {"body"}
    assert missing.status_code == 400
    assert {"job_type", "payload"} <= await _fields(missing)
    assert not_object.status_code == 400


async def test_non_json_body_is_415(database_url: str, redis_url: str) -> None:
    async with running_app(database_url, redis_url) as api:
        token = (await register(api))["access_token"]
        form = await _submit(api, token, form={"queue_name": "default"})
        text = await _submit(api, token, data=b"hello", headers={"Content-Type": "text/plain"})
    assert form.status_code == 415
    assert await error_code(form) == "UNSUPPORTED_MEDIA_TYPE"
    assert text.status_code == 415


async def test_body_over_the_limit_is_413(database_url: str, redis_url: str) -> None:
    async with running_app(database_url, redis_url, MAX_BODY_BYTES=4096) as api:
        token = (await register(api))["access_token"]
        big = {**JOB, "payload": {"blob": "x" * 10_000}}
        declared = await _submit(api, token, json=big)
        # No Content-Length: the size is counted as the body streams in.
        streamed = await api.client.post(
            "/api/v1/jobs",
            headers={
                "Authorization": f"Bearer {token}",
                "Content-Type": "application/json",
                "Transfer-Encoding": "chunked",
            },
            data=b"{" + b" " * 8000 + b"}",
        )
        small = await _submit(api, token, json=JOB)
    assert declared.status_code == 413
    assert await error_code(declared) == "PAYLOAD_TOO_LARGE"
    assert streamed.status_code == 413
    assert small.status_code == 201


async def test_rejected_batch_inserts_nothing(database_url: str, redis_url: str) -> None:
    async with running_app(database_url, redis_url) as api:
        token = (await register(api))["access_token"]
        bad_item = await api.post(
            "/api/v1/jobs/batch", token=token, json={"jobs": [JOB, {**JOB, "priority": 99}]}
        )
        unknown_queue = await api.post(
            "/api/v1/jobs/batch", token=token, json={"jobs": [JOB, {**JOB, "queue_name": "nope"}]}
        )
        empty = await api.post("/api/v1/jobs/batch", token=token, json={"jobs": []})
        too_many = await api.post("/api/v1/jobs/batch", token=token, json={"jobs": [JOB] * 1001})
    assert bad_item.status_code == 400
    assert "jobs.1.priority" in await _fields(bad_item)
    assert unknown_queue.status_code == 404
    assert empty.status_code == 400
    assert too_many.status_code == 400
    conn = await asyncpg.connect(database_url)
    try:
        assert await conn.fetchval("SELECT count(*) FROM jobs") == 0
    finally:
        await conn.close()


async def test_bad_query_parameters_are_400(database_url: str, redis_url: str) -> None:
    async with running_app(database_url, redis_url) as api:
        token = (await register(api))["access_token"]
        over = await api.get("/api/v1/jobs?limit=101", token=token)
        status = await api.get("/api/v1/jobs?status=exploded", token=token)
        page = await api.get("/api/v1/jobs?page=abc", token=token)
        empty = [
            await api.get(f"/api/v1/jobs?{name}=", token=token)
            for name in ("status", "limit", "page")
        ]
    assert [r.status_code for r in empty] == [400, 400, 400]
    assert over.status_code == 400 and "limit" in await _fields(over)
    assert status.status_code == 400 and "status" in await _fields(status)
    assert page.status_code == 400 and "page" in await _fields(page)


async def test_values_the_database_refuses_are_400_not_500(
    database_url: str, redis_url: str
) -> None:
    async with running_app(database_url, redis_url) as api:
        token = (await register(api))["access_token"]
        nul_payload = await _submit(api, token, json={**JOB, "payload": {"k": "a\u0000b"}})
        nul_type = await _submit(api, token, json={**JOB, "job_type": "a\u0000b"})
        nul_queue = await api.get("/api/v1/queues/a%00b", token=token)
    assert nul_payload.status_code == 400
    assert nul_type.status_code == 400
    assert nul_queue.status_code in (400, 404)


async def test_unexpected_errors_are_500_without_internals(
    database_url: str, redis_url: str
) -> None:
    async with running_app(database_url, redis_url) as api:

        @api.app.get("/boom")
        async def boom() -> str:
            raise RuntimeError("secret internal detail /etc/passwd")

        response = await api.get("/boom")
        text = (await response.get_data()).decode()
    assert response.status_code == 500
    assert await error_code(response) == "INTERNAL_ERROR"
    assert "secret internal detail" not in text
    assert "Traceback" not in text


async def test_json_schema_integers_and_storable_payloads(
    database_url: str, redis_url: str
) -> None:
    async with running_app(database_url, redis_url) as api:
        token = (await register(api))["access_token"]
        integral_float = await _submit(api, token, json={**JOB, "priority": 5.0})
        fractional = await _submit(api, token, json={**JOB, "priority": 5.5})
        huge = await _submit(api, token, json={**JOB, "payload": {"n": 2**70}})
        big_but_fine = await _submit(api, token, json={**JOB, "payload": {"n": 2**63 - 1}})
        huge_float = await _submit(api, token, json={**JOB, "payload": {"n": 1e30}})
        fine_float = await _submit(api, token, json={**JOB, "payload": {"n": -2.5e18}})
        dotted_queue = await api.post("/api/v1/queues", token=token, json={"name": "-q"})
        worker = await api.post(
            "/api/v1/workers", token=token, json={"name": "w", "queues": ["default"]}
        )
    assert integral_float.status_code == 201
    assert (await integral_float.get_json())["data"]["priority"] == 5
    assert fractional.status_code == 400
    assert huge.status_code == 400 and "payload" in await _fields(huge)
    assert big_but_fine.status_code == 201
    assert huge_float.status_code == 400  # the document bounds every number, floats included
    assert fine_float.status_code == 201
    assert dotted_queue.status_code == 400
    assert "max_concurrent_jobs" in await _fields(worker)


@pytest.mark.parametrize(
    "email", ["a\bb@example.test", " ops@example.test", "ops@example", "\u00e9@example.test"]
)
async def test_register_refuses_addresses_outside_the_documented_pattern(
    database_url: str, redis_url: str, email: str
) -> None:
    async with running_app(database_url, redis_url) as api:
        response = await api.post(
            "/api/v1/auth/register",
            json={"email": email, "password": "long enough pw", "organization_name": "X"},
        )
    assert response.status_code == 400
    assert "email" in await _fields(response)


JOB_TYPES = [
    "a\x00b",
    "a\x01b",
    "tab\there",
    "a\x7fb",
    "a\x85b",
    "\U0001f600 ok",
    "\xa0x",
    "ok.send",
]


async def test_the_server_and_the_document_agree_on_job_types(
    database_url: str, redis_url: str
) -> None:
    """The contract's 1-100 printable characters: what the document's schema allows for
    job_type is what the server takes, single and batch (NUL was allowed and refused)."""
    document = json.loads(resources.files("reference_server").joinpath("openapi.json").read_text())
    schema = document["components"]["schemas"]["JobCreateRequest"]["properties"]["job_type"]
    allowed = {t: jsonschema.Draft202012Validator(schema).is_valid(t) for t in JOB_TYPES}
    async with running_app(database_url, redis_url) as api:
        token = (await register(api))["access_token"]
        taken = {}
        for job_type in JOB_TYPES:
            single = await _submit(api, token, json={**JOB, "job_type": job_type})
            batch = await api.post(
                "/api/v1/jobs/batch", token=token, json={"jobs": [{**JOB, "job_type": job_type}]}
            )
            assert {single.status_code, batch.status_code} <= {201, 400}
            assert single.status_code == batch.status_code, job_type
            taken[job_type] = single.status_code == 201
    assert taken == allowed
    assert allowed["\U0001f600 ok"] and not allowed["a\x01b"]
