"""The harder faults' judgements fail on a build that breaks their promise.

Each test runs its scenario (quick sizes) on a real stack and breaks the promise in what the
scenario then judges: an accepted job deleted (lost), a second job for an idempotency key, a job's
audit row removed (half-written), the server frozen with its database (requests held), a burst
the pool can serve (nothing tested). The scenario must report it.
"""

from __future__ import annotations

import dataclasses
import signal
from collections.abc import Iterator

import psycopg
import pytest

from conformance.chaos import faults
from conformance.chaos.ledger import Ledger
from conformance.chaos.scenarios import Sizes, ensure_server
from conformance.chaos.stack import ChaosStack, chaos_stack

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("chaos")]

QUICK = Sizes.quick()


@pytest.fixture(scope="module")
def stack() -> Iterator[ChaosStack]:
    with chaos_stack() as running:
        yield running


@pytest.fixture
def serving(stack: ChaosStack) -> Iterator[ChaosStack]:
    yield stack
    ensure_server(stack)


def test_lost_job_after_database_crash_is_reported(serving: ChaosStack) -> None:
    lost: list[str] = []

    def lose_one(stack: ChaosStack, ledger: Ledger) -> None:
        lost.append(ledger.ids()[0])  # answered 2xx before the kill
        with psycopg.connect(stack.database_url, autocommit=True) as conn:
            assert conn.execute("DELETE FROM jobs WHERE id = %s", (lost[0],)).rowcount == 1

    result = faults.database_crash(serving, QUICK, before_judging=lose_one)
    assert result.lost == 1
    assert f"1 accepted job(s) lost, e.g. {lost[0]}" in result.problems
    assert not result.ok


def test_second_job_for_a_retried_key_is_reported(serving: ChaosStack) -> None:
    """What a server that ignored the key would have stored: the dropped attempt's job too."""

    def duplicate(stack: ChaosStack, ledger: Ledger) -> None:
        with psycopg.connect(stack.database_url, autocommit=True) as conn:
            copied = conn.execute(
                "INSERT INTO jobs (organization_id, queue_id, queue_name, job_type, payload,"
                " status, max_attempts, timeout_seconds) SELECT organization_id, queue_id,"
                " queue_name, job_type, payload, 'cancelled', max_attempts, timeout_seconds"
                " FROM jobs WHERE id = %s", (ledger.ids()[0],))
            assert copied.rowcount == 1

    result = faults.submit_retry(serving, dataclasses.replace(QUICK, retry_keys=5),
                                 before_judging=duplicate)
    assert result.figures["keys_stored_twice"] == 1
    assert any("made more than one job" in p for p in result.problems), result.problems
    assert not result.ok


def test_job_without_its_audit_row_is_reported(serving: ChaosStack) -> None:
    def drop_audit(stack: ChaosStack, ledger: Ledger) -> None:
        with psycopg.connect(stack.database_url, autocommit=True) as conn:
            gone = conn.execute("DELETE FROM audit_log WHERE target = %s", (ledger.ids()[0],))
            assert gone.rowcount == 1

    result = faults.pool_burst(serving, QUICK, before_judging=drop_audit)
    assert result.error is None, result.error
    assert result.figures["answers"].get(503, 0) > 0
    assert any("0 audit row(s), not 1: half-written" in p for p in result.problems), (
        result.problems)
    assert not result.ok


def test_burst_the_pool_serves_is_an_error_not_a_pass(serving: ChaosStack) -> None:
    """Without slow commits 40 submits are served well within the wait for a connection: no
    503, so the scenario tested nothing and must say so."""
    sizes = dataclasses.replace(QUICK, burst_requests=40, burst_commit_delay_ms=0)
    result = faults.pool_burst(serving, sizes)
    assert result.figures["answers"] == {201: 40}
    assert result.error is not None and "never exhausted the pool" in result.error
    assert not result.ok


def test_requests_held_during_database_hang_are_reported(
    serving: ChaosStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A build that freezes with its database: the server's processes stopped and continued
    with PostgreSQL, so requests sent during the hang are answered only after SIGCONT."""
    assert serving.pg is not None and serving.server is not None
    server = serving.server
    signal_postgres = serving.pg.signal_group

    def with_server(sig: signal.Signals) -> None:
        signal_postgres(sig)
        server.kill_group(sig)

    monkeypatch.setattr(serving.pg, "signal_group", with_server)
    result = faults.database_hang(serving, QUICK)
    monkeypatch.undo()
    assert result.figures["probes_held_until_sigcont"] > 0
    assert any("they piled up" in p for p in result.problems), result.problems
    assert any("held until SIGCONT" in p for p in result.problems), result.problems
    assert not result.ok
