"""Untrusted or vanishing targets fail once, clearly: the run says so in one line, the HTTP items
are `blocked` (by LIVE-TLS-CHAIN, or by reachability), and nothing reads "the check crashed".

Real servers on 127.0.0.1: one serving TLS with a certificate from a throwaway trustme CA the kit
is not told about, one that stops answering after a few requests; the whole registry runs.
"""

from __future__ import annotations

import contextlib
import io
import json
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import trustme

from conformance import cli

HEALTH = b'{"status":"healthy","checks":{"database":"ok","redis":"ok"}}'
_LOCK = threading.Lock()


class _Target(ThreadingHTTPServer):
    daemon_threads = True
    budget: int | None = None  # requests answered before the server goes away
    answered = 0


class _Handler(BaseHTTPRequestHandler):
    server: _Target

    def _answer(self) -> None:
        server = self.server
        with _LOCK:
            server.answered += 1
            last = server.budget is not None and server.answered == server.budget
        health = self.path.split("?")[0] in ("/health", "/ready")
        body = HEALTH if health else b'{"success":false}'
        self.send_response(200 if health else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        if last:  # the target vanishes: its listening socket closes, connections are refused
            threading.Thread(target=_vanish, args=(server,), daemon=True).start()

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_HEAD = _answer

    def log_message(self, *args: Any) -> None:
        pass


def _vanish(server: _Target) -> None:
    server.shutdown()
    server.server_close()


@contextlib.contextmanager
def serving(tls: ssl.SSLContext | None = None, budget: int | None = None) -> Iterator[_Target]:
    server = _Target(("127.0.0.1", 0), _Handler)
    server.budget = budget
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        if budget is None or server.answered < budget:
            _vanish(server)


def run(argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
        ) -> tuple[int, str, dict[str, Any], str]:
    """Exit status, everything printed (the run's lines and pytest's), results, readiness.md."""
    out = io.StringIO()
    code = cli.main(["run", "--reports-dir", str(tmp_path / "reports"), *argv], out=out)
    printed = capsys.readouterr()
    latest = tmp_path / "reports" / "latest"
    document = json.loads((latest / "results.json").read_text())
    return (code, out.getvalue() + printed.out + printed.err, document,
            (latest / "readiness.md").read_text())


def live_items(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {i["id"]: i for i in document["items"]
            if any(".checks.live." in f["check"] for f in i["findings"])}


def crashed(document: dict[str, Any]) -> list[str]:
    return [i["id"] for i in document["items"] for f in i["findings"]
            if "the check crashed" in f["message"]]


def test_an_untrusted_certificate_blocks_the_http_items_once_and_clearly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ca = trustme.CA()  # never given to the kit: the certificate cannot verify
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(tls)
    with serving(tls) as server:
        url = f"https://127.0.0.1:{server.server_address[1]}"
        code, out, document, readiness = run(["--target-url", url], tmp_path, capsys)

    assert code == 1
    # One line about it, with both remedies (the summary names the blocked items, no reason
    # repeated per item); LIVE-TLS-CHAIN itself is the one failed blocker.
    [line] = [line for line in out.splitlines() if line.startswith("tls:")]
    assert line.startswith(f"tls: the certificate of {url} does not verify")
    assert "--ca-bundle PEM" in line and "--insecure" in line
    assert out.count("--ca-bundle") == 1 and "crashed" not in out
    assert "  blocked by LIVE-TLS-CHAIN (" in out

    items = live_items(document)
    assert items["LIVE-TLS-CHAIN"]["status"] == "failed"
    assert items["LIVE-TLS-SERVED"]["status"] == "passed"
    tls_items = {i for i in items if i.startswith("LIVE-TLS-")}
    blocked = {i for i, record in items.items() if record["status"] == "blocked"}
    assert not blocked & tls_items
    assert len(blocked) >= 20
    for item_id in blocked:
        [finding] = items[item_id]["findings"]
        assert finding["blocked_by"] == "LIVE-TLS-CHAIN"
        assert "--ca-bundle" in finding["message"]
    # Every other live item is blocked or has nothing to judge here (no database URL...).
    others = {i: r["status"] for i, r in items.items() if i not in tls_items | blocked}
    assert set(others.values()) <= {"not_applicable", "skipped"}, others
    assert not crashed(document) and "the check crashed" not in readiness
    assert "`blocked`" in readiness and "blocked by LIVE-TLS-CHAIN" in readiness


def test_the_same_certificate_with_its_ca_bundle_blocks_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ca = trustme.CA()
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(tls)
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    with serving(tls) as server:
        url = f"https://127.0.0.1:{server.server_address[1]}"
        _, out, document, _ = run(["--target-url", url, "--ca-bundle", str(bundle)], tmp_path,
                                  capsys)
    assert "tls:" not in out
    items = live_items(document)
    assert items["LIVE-TLS-CHAIN"]["status"] == "passed"
    assert not [i for i, r in items.items() if r["status"] == "blocked"]


def test_a_target_that_vanishes_mid_run_blocks_the_items_after(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with serving(budget=6) as server:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        code, out, document, readiness = run(["--target-url", url], tmp_path, capsys)
        answered = server.answered

    assert answered == 6  # nothing was answered after it went away
    assert code == 1
    items = live_items(document)
    blocked = {i: r for i, r in items.items() if r["status"] == "blocked"}
    assert len(blocked) >= 10, {i: r["status"] for i, r in items.items()}
    for record in blocked.values():
        [finding] = record["findings"]
        assert finding["blocked_by"] == "reachability"
        assert "stopped answering" in finding["message"]
    assert out.count("stopped answering") == 1, out  # said once, not per check
    # The rate-limit probe runs last, long after the target went away.
    assert items["LIVE-RATE-LIMIT"]["status"] == "blocked"
    assert not crashed(document) and "the check crashed" not in readiness
