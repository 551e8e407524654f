"""Tenant isolation and permissions: another organisation gets nothing of ours, a member no writes.

Organisation A is the run's own credential; B is a second identity (`identities.py`). B aims at
A's job, queue and API key (and leases A's queue with its own worker): every attempt must get 404
(or 403, which the contract allows), show nothing of A's, and leave A's objects as they were, read
back as A. With writes allowed (the reference stack, or --allow-writes), A's objects are throwaway
ones the kit creates and removes; without, only reads are tried, on objects A already has.
"""

from __future__ import annotations

import contextlib
import secrets
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from conformance.checks.live.common import Report, may_write
from conformance.checks.live.http import (
    LiveClient,
    LoginError,
    auth_headers,
    client_for,
    error_code_of,
    payload_of,
)
from conformance.checks.live.identities import (
    HOW_TO_GIVE_ONE,
    Identity,
    IdentityError,
    RegistrationClosed,
    member_identity,
    organisation_of,
    second_identity,
)
from conformance.checks.registry import check

if TYPE_CHECKING:
    import httpx

    from conformance.checks.registry import CheckContext
    from conformance.model import Evidence, Finding

READ_ITEMS = ("LIVE-TENANT-JOB-READ", "LIVE-TENANT-QUEUE-READ", "LIVE-TENANT-LIST")
WRITE_ITEMS = (
    "LIVE-TENANT-JOB-WRITE", "LIVE-TENANT-QUEUE-WRITE", "LIVE-TENANT-KEY-WRITE",
    "LIVE-TENANT-LEASE",
)
MEMBER_ITEM = "LIVE-PERM-MEMBER"
TENANCY_ITEMS = (*READ_ITEMS, *WRITE_ITEMS, MEMBER_ITEM)
#: The contract's member role; a key with exactly these acts as a member.
MEMBER_PERMISSIONS = ["queue:read", "job:read", "job:write"]
REFUSALS = (403, 404)
HOW_TO_WRITE = "give --allow-writes (the kit then creates throwaway objects and removes them)"


@dataclass
class Objects:
    """A's objects the probes aim at."""

    queue: str | None = None
    job_id: str | None = None
    job_type: str | None = None
    key_id: str | None = None
    key_secret: str | None = None  # the key itself: its survival is checked by using it
    marker: str | None = None  # a string only A's objects contain: B must never see it
    made: bool = False
    extra_keys: list[str] = field(default_factory=list)  # made by the member probe, or leaked
    extra_queues: list[str] = field(default_factory=list)


class Probe:
    """B's attempts on A's objects: each answer judged on its own, evidence kept per item.

    An attempt counts only when its answer shows the isolation: a refusal (404, or 403, which
    the contract allows), or a list with nothing of A's. 401 means B's credential stopped
    working, 429 a rate limit: neither grants nor refuses, the item is an error. A 5xx is a
    failure to investigate, never a pass.
    """

    def __init__(self, report: Report, client: LiveClient, b: dict[str, str], objects: Objects):
        self.report = report
        self.client = client
        self.b = b
        self.objects = objects
        self.problems: dict[str, list[str]] = {}
        self.faults: dict[str, list[str]] = {}
        self.evidence: dict[str, list[Evidence]] = {}
        self.undecided: dict[str, str] = {}
        self.unjudged: dict[str, list[str]] = {}
        self.judged: dict[str, int] = {}

    def send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return self.client.request(method, path, headers=self.b, **kwargs)

    def answered(self, item: str, what: str, response: httpx.Response) -> bool:
        """Keeps the evidence; False when the status says nothing of the object (401, 429,
        5xx: noted for the item's finding)."""
        self.evidence.setdefault(item, []).append(self.client.evidence(response, what))
        status = response.status_code
        if status == 401:
            self.undecided.setdefault(
                item, f"{what}: 401, organisation B's credential was refused (it was accepted "
                "before): nothing judged")
        elif status == 429:
            self.undecided.setdefault(item, f"{what}: 429, rate limited before it was judged")
        elif status >= 500:
            self.faults.setdefault(item, []).append(
                f"{what}: {status} {error_code_of(response) or ''}".strip())
        else:
            return True
        return False

    def shows_a(self, item: str, what: str, response: httpx.Response, *, by_id: bool) -> bool:
        """A's marker in the answer (or, in a list, A's job id: a refusal may name the id)."""
        marker, job_id = self.objects.marker, self.objects.job_id if by_id else None
        if (marker and marker in response.text) or (job_id and job_id in response.text):
            self.problem(item, f"{what}: the answer shows organisation A's data")
            return True
        return False

    def count(self, item: str) -> None:
        self.judged[item] = self.judged.get(item, 0) + 1

    def expect_refused(self, item: str, what: str, response: httpx.Response) -> None:
        if self.shows_a(item, what, response, by_id=False) \
                | (not self.answered(item, what, response)):
            return
        if response.status_code in REFUSALS:
            self.count(item)
        else:
            self.problem(
                item, f"{what}: {response.status_code} {error_code_of(response) or ''}".strip())

    def expect_empty_of_a(self, item: str, what: str, response: httpx.Response) -> None:
        """A list B may read (or be refused): it must hold nothing of A's."""
        if self.shows_a(item, what, response, by_id=True) \
                | (not self.answered(item, what, response)):
            return
        if response.is_success or response.status_code in REFUSALS:
            self.count(item)
        else:
            self.unjudged.setdefault(item, []).append(f"{what}: {response.status_code}")

    def problem(self, item: str, text: str) -> None:
        self.problems.setdefault(item, []).append(text)

    def findings(self, items: tuple[str, ...]) -> Iterator[Finding]:
        for item in items:
            evidence = self.evidence.get(item, [])
            problems, faults = self.problems.get(item, []), self.faults.get(item, [])
            if problems:
                yield self.report.failed(
                    item, "organisation B reached organisation A's data: " + "; ".join(problems),
                    *evidence, expected="404 (or 403) revealing nothing, A's data unchanged",
                    actual=problems[0],
                )
            elif faults:
                yield self.report.failed(
                    item, "the server failed on organisation B's attempts, which shows no "
                    "isolation (investigate its log): " + "; ".join(faults), *evidence,
                    expected="404 (or 403) revealing nothing", actual=faults[0])
            elif item in self.undecided:
                yield self.report.error(item, self.undecided[item], *evidence)
            elif self.judged.get(item):
                yield self.report.passed(
                    item, f"{self.judged[item]} attempt(s) by organisation B refused or shown "
                    "nothing of A's, A's data unchanged", *evidence,
                )
            elif evidence:
                yield self.report.not_applicable(
                    item, "no answer showed a refusal or a list to judge: "
                    + "; ".join(self.unjudged.get(item, ["nothing counted"])))


def _data(response: httpx.Response) -> Any:
    return payload_of(response) if response.status_code in (200, 201) else None


def _make_objects(client: LiveClient, a: dict[str, str]) -> tuple[Objects, str | None]:
    """Throwaway queue, pending job and API key of A's; (objects, why not) on refusal."""
    tag = secrets.token_hex(4)
    objects = Objects(marker=f"conformance-isolation-{secrets.token_hex(8)}", made=True)
    queue = f"conformance-isolation-{tag}"
    response = client.post("/api/v1/queues", headers=a,
                           json={"name": queue, "description": objects.marker})
    if response.status_code not in (200, 201):
        return objects, f"A could not create a queue: {response.status_code}"
    objects.queue = queue
    objects.job_type = f"conformance_isolation_{tag}"
    response = client.post("/api/v1/jobs", headers=a, json={
        "queue_name": queue, "job_type": objects.job_type, "payload": {"marker": objects.marker},
        "priority": 0,
    })
    job = _data(response)
    if not isinstance(job, dict) or not job.get("id"):
        return objects, f"A could not submit a job: {response.status_code}"
    objects.job_id = str(job["id"])
    response = client.post("/api/v1/api-keys", headers=a, json={
        "name": f"conformance-isolation-{tag}", "permissions": ["job:read"],
    })
    key = _data(response)
    if isinstance(key, dict) and key.get("id"):
        objects.key_id = str(key["id"])
        objects.key_secret = str(key["key"]) if key.get("key") else None
    return objects, None


def _listed(data: Any, key: str) -> list[dict[str, Any]] | None:
    """The list in a list response, or None when none can be found.

    The contract fixes no wrapper: a bare array, `data[key]`, or a dict's one list-valued field.
    """
    if isinstance(data, list):
        listed: Any = data
    elif isinstance(data, dict) and isinstance(data.get(key), list):
        listed = data[key]
    elif isinstance(data, dict):
        lists = [v for v in data.values() if isinstance(v, list)]
        if len(lists) != 1:
            return None
        listed = lists[0]
    else:
        return None
    return [item for item in listed if isinstance(item, dict)]


def _find_objects(client: LiveClient, a: dict[str, str], b: dict[str, str]) -> Objects:
    """Read-only: an existing job of A's, and a queue name A has and B does not."""
    objects = Objects()
    jobs = _listed(_data(client.get("/api/v1/jobs?limit=1", headers=a)), "jobs")
    if jobs:
        job = jobs[0]
        objects.job_id, objects.job_type = str(job.get("id")), str(job.get("job_type"))

    def names(headers: dict[str, str]) -> list[str] | None:
        listed = _listed(_data(client.get("/api/v1/queues", headers=headers)), "queues")
        return None if listed is None else [str(q.get("name")) for q in listed]

    # B's list unreadable: a name of A's might be B's too, so no queue is chosen.
    b_names = names(b)
    if b_names is not None:
        objects.queue = next((n for n in names(a) or () if n not in set(b_names)), None)
    return objects


def _job_status(client: LiveClient, a: dict[str, str], job_id: str) -> str:
    job = _data(client.get(f"/api/v1/jobs/{job_id}", headers=a))
    return str(job.get("status")) if isinstance(job, dict) else "gone"


def _queue_state(client: LiveClient, a: dict[str, str], name: str) -> tuple[Any, Any] | None:
    queue = _data(client.get(f"/api/v1/queues/{name}", headers=a))
    return (queue.get("description"), queue.get("paused")) if isinstance(queue, dict) else None


def _key_survived(client: LiveClient, a: dict[str, str], objects: Objects) -> bool | None:
    """Whether A's key still works: authenticated with (its secret is known), else listed.

    None when neither can tell (no secret, and a list of unknown shape).
    """
    if objects.key_secret:
        response = client.get("/api/v1/auth/validate", headers={"X-API-Key": objects.key_secret})
        if response.status_code == 200:
            return True
        if response.status_code == 401:
            return False
    listed = _listed(_data(client.get("/api/v1/api-keys", headers=a)), "api_keys")
    if listed is None:
        return None
    return objects.key_id in {str(k.get("id")) for k in listed}


def _reads(probe: Probe, objects: Objects) -> None:
    if objects.job_id:
        probe.expect_refused("LIVE-TENANT-JOB-READ", "B: GET A's job",
                             probe.send("GET", f"/api/v1/jobs/{objects.job_id}"))
    if objects.queue:
        q = objects.queue
        probe.expect_refused("LIVE-TENANT-QUEUE-READ", "B: GET A's queue",
                             probe.send("GET", f"/api/v1/queues/{q}"))
        probe.expect_refused("LIVE-TENANT-QUEUE-READ", "B: GET A's queue stats",
                             probe.send("GET", f"/api/v1/queues/{q}/stats"))
        probe.expect_empty_of_a("LIVE-TENANT-LIST", "B: GET /jobs filtered by A's queue name",
                                probe.send("GET", "/api/v1/jobs", params={"queue_name": q}))
        response = probe.send("GET", "/api/v1/queues")
        listed = _listed(_data(response), "queues")
        marker = probe.objects.marker
        shown = marker is not None and marker in response.text
        # A list of unknown shape proves nothing either way: it is not counted as an attempt.
        if listed is not None or shown or response.status_code in REFUSALS \
                or response.status_code in (401, 429) or response.status_code >= 500:
            item = "LIVE-TENANT-LIST"
            if listed is not None and q in [q2.get("name") for q2 in listed]:
                probe.problem(item, "B: GET /queues lists A's queue")
            elif shown:
                probe.problem(item, "B: GET /queues shows A's queue")
            if probe.answered(item, "B: GET /queues", response) and not shown:
                probe.count(item)
    if objects.job_type:
        probe.expect_empty_of_a(
            "LIVE-TENANT-LIST", "B: GET /jobs filtered by A's job type",
            probe.send("GET", "/api/v1/jobs", params={"job_type": objects.job_type}))


def _writes(probe: Probe, client: LiveClient, a: dict[str, str], objects: Objects) -> None:
    job_id, queue = objects.job_id, objects.queue
    if job_id and queue:
        before = _job_status(client, a, job_id)
        item, what = "LIVE-TENANT-LEASE", "B: register a worker on A's queue name"
        worker = probe.send("POST", "/api/v1/workers", json={
            "name": "conformance-isolation-b", "queues": [queue], "max_concurrent_jobs": 1})
        worker_data = _data(worker)
        if probe.answered(item, what, worker):
            if isinstance(worker_data, dict) and worker_data.get("id"):
                leased = probe.send("POST", f"/api/v1/workers/{worker_data['id']}/lease",
                                    json={"max_jobs": 10, "wait_seconds": 0})
                probe.expect_empty_of_a(item, "B's worker: lease", leased)
            elif worker.status_code in REFUSALS:
                probe.count(item)  # refused a worker on a queue name B does not have
            else:
                probe.unjudged.setdefault(item, []).append(f"{what}: {worker.status_code}")
        after = _job_status(client, a, job_id)
        if after != before:
            probe.problem("LIVE-TENANT-LEASE", f"A's job went {before} -> {after}")
    if job_id:
        before = _job_status(client, a, job_id)
        fake_worker = str(uuid.uuid4())
        for action, body in (("cancel", None), ("retry", None),
                             ("complete", {"worker_id": fake_worker, "output": {}}),
                             ("fail", {"worker_id": fake_worker, "error_message": "by B",
                                       "retryable": False})):
            probe.expect_refused("LIVE-TENANT-JOB-WRITE", f"B: POST A's job /{action}",
                                 probe.send("POST", f"/api/v1/jobs/{job_id}/{action}", json=body))
        after = _job_status(client, a, job_id)
        if after != before:
            probe.problem("LIVE-TENANT-JOB-WRITE", f"A's job went {before} -> {after}")
    if queue:
        before_queue = _queue_state(client, a, queue)
        probe.expect_refused("LIVE-TENANT-QUEUE-WRITE", "B: PUT A's queue", probe.send(
            "PUT", f"/api/v1/queues/{queue}", json={"description": "changed by organisation B"}))
        for action in ("pause", "resume"):
            probe.expect_refused("LIVE-TENANT-QUEUE-WRITE", f"B: POST A's queue /{action}",
                                 probe.send("POST", f"/api/v1/queues/{queue}/{action}"))
        probe.expect_refused("LIVE-TENANT-QUEUE-WRITE", "B: DELETE A's queue",
                             probe.send("DELETE", f"/api/v1/queues/{queue}"))
        after_queue = _queue_state(client, a, queue)
        if after_queue != before_queue:
            probe.problem("LIVE-TENANT-QUEUE-WRITE",
                          f"A's queue (description, paused) went {before_queue} -> {after_queue}")
    if objects.key_id:
        probe.expect_refused("LIVE-TENANT-KEY-WRITE", "B: DELETE A's API key",
                             probe.send("DELETE", f"/api/v1/api-keys/{objects.key_id}"))
        if _key_survived(client, a, objects) is False:
            probe.problem("LIVE-TENANT-KEY-WRITE", "A's API key is gone")


#: Permissions a member does not hold: an identity given as a member that reports one is not.
WRITE_PERMISSIONS = ("queue:write", "worker:write", "api_key:write")


def _member_headers(
    report: Report, client: LiveClient, a: dict[str, str], objects: Objects, tag: str,
    given: Identity | None,
) -> tuple[dict[str, str], str] | Finding:
    """(the member's headers, where they came from), or the finding saying why there are none."""
    if given is not None:
        validated = client.get("/api/v1/auth/validate", headers=given.headers)
        held = payload_of(validated) if validated.status_code == 200 else None
        permissions = held.get("permissions") if isinstance(held, dict) else None
        extra = sorted(set(permissions) & set(WRITE_PERMISSIONS)) \
            if isinstance(permissions, list) else []
        if extra:
            return report.error(
                MEMBER_ITEM, f"the identity given with {given.how} holds {', '.join(extra)}: it "
                "is no member (the contract's member holds queue:read, job:read, job:write)",
                client.evidence(validated, f"GET /api/v1/auth/validate as {given.how}"))
        return given.headers, given.how
    created = client.post("/api/v1/api-keys", headers=a, json={
        "name": f"conformance-member-{tag}", "permissions": MEMBER_PERMISSIONS})
    key = _data(created)
    if not isinstance(key, dict) or not key.get("key"):
        return report.not_applicable(
            MEMBER_ITEM, f"no member identity: A could not create a key with the member's "
            f"permissions ({created.status_code}); give --member-token or --member-api-key",
        )
    objects.extra_keys.append(str(key.get("id")))
    return {"X-API-Key": str(key["key"])}, "a member key the kit made"


def _member(
    report: Report, client: LiveClient, a: dict[str, str], objects: Objects,
    given: Identity | None = None,
) -> Finding:
    """A member of A's organisation gets 403 PERM_001 on every write.

    The member is the one given (--member-token, --member-api-key), else a key the kit makes with
    only the member role's permissions. Its control: it reads the queues (a member holds
    queue:read) and, when given, is in A's organisation (where /auth/validate says so); only
    then do its refusals count.
    """
    tag = secrets.token_hex(4)
    got = _member_headers(report, client, a, objects, tag, given)
    if not isinstance(got, tuple):
        return got
    member, how = got
    queue = objects.queue or "default"
    control = client.get("/api/v1/queues", headers=member)
    evidence = [client.evidence(control, f"member ({how}): GET /queues (the control)")]
    if control.status_code == 401:
        return report.error(
            MEMBER_ITEM, f"the member credential ({how}) was not accepted (401): its refusals "
            "would prove nothing; give a working one", *evidence)
    if control.status_code != 200:
        return report.error(
            MEMBER_ITEM, f"the member ({how}) could not read queues ({control.status_code}): "
            "its refusals would prove nothing", *evidence)
    if given is not None:
        # Its writes aim at A's objects: in another organisation they would get 404, not 403.
        theirs, ours = organisation_of(client, member), organisation_of(client, a)
        if theirs is not None and ours is not None and theirs != ours:
            return report.error(
                MEMBER_ITEM, f"the member given with {how} is in another organisation than the "
                "run's credential: give a member of the run's own organisation", *evidence)
    attempts: list[tuple[str, str, str, dict[str, Any] | None]] = [
        ("create a queue", "POST", "/api/v1/queues", {"name": f"conformance-member-{tag}"}),
        ("update a queue", "PUT", f"/api/v1/queues/{queue}", {"description": "by a member"}),
        ("pause a queue", "POST", f"/api/v1/queues/{queue}/pause", None),
        ("register a worker", "POST", "/api/v1/workers",
         {"name": "conformance-member", "queues": [queue], "max_concurrent_jobs": 1}),
        ("create an API key", "POST", "/api/v1/api-keys",
         {"name": f"conformance-member-{tag}", "permissions": ["job:read"]}),
    ]
    if objects.key_id:
        attempts.append(("delete an API key", "DELETE", f"/api/v1/api-keys/{objects.key_id}",
                         None))
    attempts.append(("delete a queue", "DELETE", f"/api/v1/queues/{queue}", None))
    problems = []
    for what, method, path, body in attempts:
        response = client.request(method, path, headers=member, json=body)
        evidence.append(client.evidence(response, f"member: {what}"))
        code = error_code_of(response)
        if response.status_code != 403 or code != "PERM_001":
            problems.append(f"{what}: {response.status_code} {code or ''}".strip())
            made = _data(response)
            if isinstance(made, dict) and what == "create an API key" and made.get("id"):
                objects.extra_keys.append(str(made["id"]))
            if what == "create a queue" and response.status_code in (200, 201):
                objects.extra_queues.append(f"conformance-member-{tag}")
    if problems:
        return report.failed(
            MEMBER_ITEM, f"a member ({how}) was not refused: " + "; ".join(problems), *evidence,
            expected="403 PERM_001 on queue, worker and API-key writes", actual=problems[0])
    return report.passed(
        MEMBER_ITEM, f"{len(attempts)} writes by a member ({how}) refused with 403 PERM_001",
        *evidence)


def _clean_up(client: LiveClient, a: dict[str, str], objects: Objects) -> None:
    with contextlib.suppress(Exception):
        if objects.job_id:
            client.post(f"/api/v1/jobs/{objects.job_id}/cancel", headers=a)
        for key_id in [objects.key_id, *objects.extra_keys]:
            if key_id:
                client.request("DELETE", f"/api/v1/api-keys/{key_id}", headers=a)
        for queue in [objects.queue, *objects.extra_queues]:
            if queue:
                client.request("DELETE", f"/api/v1/queues/{queue}", headers=a)


@check(*TENANCY_ITEMS, needs=("target",))
def tenant_isolation(ctx: CheckContext) -> Iterator[Finding]:
    """Organisation B cannot read, change, lease or list A's objects; a member cannot write."""
    report = Report(f"{__name__}.tenant_isolation")
    writes = may_write(ctx)
    with client_for(ctx) as client:
        closed: RegistrationClosed | None = None
        unusable: IdentityError | None = None
        try:
            a = auth_headers(ctx, client)
            identity = second_identity(ctx, client) if a else None
        except LoginError as exc:
            for item in TENANCY_ITEMS:
                yield report.error(item, str(exc), exc.evidence)
            return
        except RegistrationClosed as exc:
            # B's items cannot be judged; the member item needs only A and still runs.
            identity, closed = None, exc
        except IdentityError as exc:
            # B given (or registered) and not working: one cause for B's items; the member
            # item needs only A and still runs.
            identity, unusable = None, exc
        if a is None:
            for item in TENANCY_ITEMS:
                yield report.not_applicable(item, "no credential for organisation A: give "
                                                  "--token, --api-key or --email/--password")
            return
        if closed is not None:
            for item in (*READ_ITEMS, *WRITE_ITEMS):
                yield report.not_applicable(item, str(closed))
        elif unusable is not None:
            for item in (*READ_ITEMS, *WRITE_ITEMS):
                yield report.error(item, str(unusable),
                                   *(e for e in (unusable.evidence,) if e))
        elif identity is None:
            for item in (*READ_ITEMS, *WRITE_ITEMS):
                yield report.not_applicable(item, f"no second organisation: {HOW_TO_GIVE_ONE}")
        else:
            org_a, org_b = organisation_of(client, a), organisation_of(client, identity.headers)
            if org_a is not None and org_a == org_b:
                for item in (*READ_ITEMS, *WRITE_ITEMS):
                    yield report.error(item, f"the second identity ({identity.how}) is in the "
                                             f"run's own organisation: {HOW_TO_GIVE_ONE}")
                identity = None
        made = Objects()
        why_not: str | None = None
        try:
            if writes:
                made, why_not = _make_objects(client, a)
            objects = made
            if identity is not None and (why_not or not writes):
                # Without throwaway objects of its own, B aims at what A already has, reading only.
                objects = _find_objects(client, a, identity.headers)
            wrote = writes and not why_not
            if identity is not None:
                probe = Probe(report, client, identity.headers, objects)
                _reads(probe, objects)
                if wrote:
                    _writes(probe, client, a, objects)
                yield from probe.findings((*READ_ITEMS, *WRITE_ITEMS))
                for item in READ_ITEMS:
                    if item not in probe.evidence:
                        yield report.not_applicable(
                            item, "organisation A has no object of this kind that B lacks: "
                            f"{HOW_TO_WRITE}")
                if not writes:
                    unwritten = f"writes on another organisation's objects: {HOW_TO_WRITE}"
                elif why_not:
                    unwritten = f"A's throwaway objects could not be made ({why_not})"
                else:
                    unwritten = "A's object of this kind could not be made"
                for item in WRITE_ITEMS:
                    if item not in probe.evidence:
                        yield report.not_applicable(item, unwritten)
            if wrote:
                yield _member(report, client, a, made, member_identity(ctx))
            elif why_not:
                yield report.not_applicable(
                    MEMBER_ITEM, f"A's throwaway objects could not be made ({why_not})")
            else:
                yield report.not_applicable(
                    MEMBER_ITEM, "a member's writes, refused or not, aim at A's throwaway queue "
                    f"and key: {HOW_TO_WRITE}; give the member with --member-token or "
                    "--member-api-key, or the kit makes one as an API key")
        finally:
            if made.made or made.extra_keys:
                _clean_up(client, a, made)
