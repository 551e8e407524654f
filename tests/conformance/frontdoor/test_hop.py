"""Which hop answered, as the evidence of the front-door, rate-limit and CORS items says it."""

from __future__ import annotations

import httpx

from conformance.checks.live.frontdoor import hop

ENVELOPE = b'{"success":false,"error":{"code":"RATE_LIMIT_EXCEEDED","message":"x"}}'


def _response(status: int, content: bytes = b"", **headers: str) -> httpx.Response:
    return httpx.Response(status, content=content,
                          headers={k.replace("_", "-"): v for k, v in headers.items()})


def test_nginx_s_own_429_in_the_api_s_envelope_is_the_front_door_s() -> None:
    """compose/nginx answers 429 in the contract's envelope, without the app's X-RateLimit-*."""
    own = _response(429, ENVELOPE, content_type="application/json", server="nginx",
                    retry_after="1")
    assert hop(own, authenticated=True).startswith("the front door (nginx, in the API's envelope")
    # Unauthenticated, the contract promises no X-RateLimit-*: nothing tells the two apart.
    assert hop(own) == "the app (JSON answer, through nginx)"


def test_the_app_s_answers_through_nginx_are_the_app_s() -> None:
    app = _response(429, ENVELOPE, content_type="application/json", server="nginx",
                    x_ratelimit_limit="600", retry_after="7")
    assert hop(app, authenticated=True) == "the app (JSON answer, through nginx)"
    # No proxy named: the app itself (served directly, e.g. the embedded stack).
    direct = _response(429, ENVELOPE, content_type="application/json", server="granian")
    assert hop(direct, authenticated=True) == "the app (JSON answer, through granian)"


def test_a_page_is_the_front_door_s_and_an_empty_answer_says_it_cannot_tell() -> None:
    page = _response(403, b"<html>403 Forbidden</html>", content_type="text/html",
                     server="nginx")
    assert hop(page) == "the front door (nginx, its own page)"
    preflight = _response(204, server="nginx", access_control_allow_origin="https://a.example")
    assert hop(preflight) == "nginx (no body: relayed or its own)"
