"""A member given with --member-api-key is the one LIVE-PERM-MEMBER judges, on the reference stack.

The kit makes a member API key itself when none is given; a deployment whose run credential may
not mint keys (or a team that keeps a real member account for the purpose) gives one instead.
"""

from __future__ import annotations

import ssl

import httpx
from live_support import ServerFactory, explain, run_checks

from conformance.checks.live.tenancy import MEMBER_ITEM, MEMBER_PERMISSIONS
from conformance.model import Status


def test_a_given_member_key_is_refused_every_write_on_the_reference(
    server_factory: ServerFactory,
) -> None:
    with server_factory() as server:
        target = server.target
        verify = ssl.create_default_context(cafile=str(target.ca_bundle))
        with httpx.Client(base_url=target.base_url, verify=verify, timeout=10) as client:
            token = client.post("/api/v1/auth/login", json={
                "email": target.admin_email, "password": target.admin_password,
            }).json()["data"]["access_token"]
            admin = {"Authorization": f"Bearer {token}"}
            made = client.post("/api/v1/api-keys", headers=admin, json={
                "name": "a member of the team", "permissions": MEMBER_PERMISSIONS})
            assert made.status_code in (200, 201), made.text
            key = made.json()["data"]["key"]
            findings = run_checks(server.context(member_api_key=key),
                                  "tenancy.tenant_isolation")
    member = next(f for f in findings if f.item_id == MEMBER_ITEM)
    assert member.status is Status.PASSED, explain(findings)
    # The control and the writes went out with the given key, not one the kit made.
    assert "--member-api-key" in member.message
