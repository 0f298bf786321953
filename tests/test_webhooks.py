"""``POST /webhooks/zoom`` (SPEC 14): verified over the raw bytes, answered, handled
once and passed on to the backend, or refused with nothing done."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.helpers.metrics import scrape, value
from tests.helpers.proxies import Proxy, ProxyFactory
from tests.helpers.webhooks import (
    SECRET,
    Backend,
    event_body,
    post_event,
    running_backend,
    zoom_signature,
)

pytestmark = pytest.mark.both_transports


@pytest.fixture
async def backend() -> AsyncIterator[Backend]:
    async with running_backend() as backend:
        yield backend


def webhooks(**settings: Any) -> dict[str, Any]:
    return {"webhooks": {"secret_token": SECRET, **settings}}


@pytest.fixture
async def proxy(make_proxy: ProxyFactory, backend: Backend) -> Proxy:
    return await make_proxy(**webhooks(forward_to=backend.url))


async def test_a_verified_event_is_forwarded_byte_for_byte_with_its_headers(
    proxy: Proxy, backend: Backend
) -> None:
    body = b'{"event":"meeting.started",  "payload":{"object":{"id":1}}}'  # odd spacing kept
    stamp = str(int(time.time()))
    status, _ = await post_event(proxy, body, timestamp=stamp)
    assert status == 200
    [(received, headers)] = backend.received
    assert received == body
    assert headers["x-zm-request-timestamp"] == stamp
    assert headers["x-zm-signature"] == zoom_signature(stamp, body)
    assert headers["Content-Type"] == "application/json"


@pytest.mark.parametrize(
    "signature",
    [
        "v0=" + "0" * 64,
        "v0=",
        "garbage",
        zoom_signature("1", b"{}"),
        # Zoom's signature of the same event, re-serialised: the bytes are what count.
        "reserialised",
        "wrong secret",
    ],
)
async def test_a_bad_signature_is_401_and_nothing_is_forwarded(
    proxy: Proxy, backend: Backend, signature: str
) -> None:
    body, stamp = event_body(), str(int(time.time()))
    if signature == "reserialised":
        signature = zoom_signature(stamp, json.dumps(json.loads(body), indent=1).encode())
    elif signature == "wrong secret":
        signature = zoom_signature(stamp, body, secret="another app's token")
    status, answer = await post_event(proxy, body, timestamp=stamp, signature=signature)
    assert (status, json.loads(answer)["error"]) == (401, "invalid_signature")
    assert backend.received == []


async def test_a_missing_signature_is_401(proxy: Proxy, backend: Backend) -> None:
    async with proxy.client.post(
        f"{proxy.url}/webhooks/zoom",
        data=event_body(),
        headers={"x-zm-request-timestamp": str(int(time.time()))},
    ) as response:
        assert response.status == 401
    assert backend.received == []


@pytest.mark.parametrize("offset", [-301, 301, -100_000, 10**9])
async def test_a_timestamp_outside_max_skew_either_way_is_401(
    proxy: Proxy, backend: Backend, offset: int
) -> None:
    stamp = str(int(time.time()) + offset)
    status, answer = await post_event(proxy, event_body(), timestamp=stamp)
    assert (status, json.loads(answer)["error"]) == (401, "stale_event")
    assert backend.received == []


@pytest.mark.parametrize("stamp", ["", "soon", "1.5", "-1", "١٢٣", "9" * 40])
async def test_a_timestamp_that_is_not_unix_seconds_is_400(
    proxy: Proxy, backend: Backend, stamp: str
) -> None:
    body = event_body()
    status, answer = await post_event(
        proxy, body, timestamp=stamp, signature=zoom_signature(stamp, body)
    )
    assert (status, json.loads(answer)["error"]) == (400, "invalid_event")
    assert backend.received == []


@pytest.mark.parametrize(
    "body",
    [
        b"\xff\xfe not utf-8",
        b"[1, 2]",
        b'"a string"',
        b"not json",
        b"",
        b'{"payload": {}}',
        b'{"event": 7}',
        b'{"event": ""}',
        b'{"event": "meeting.started", "payload": []}',
        b'{"event": "meeting.started", "n": ' + b"9" * 5000 + b"}",
        b"[" * 100_000,
    ],
    ids=[
        "invalid utf-8",
        "an array",
        "a string",
        "not json",
        "empty",
        "no event",
        "a numeric event",
        "an empty event",
        "a payload that is no object",
        "a huge number",
        "deep nesting",
    ],
)
async def test_a_signed_body_that_is_not_an_event_is_400(
    proxy: Proxy, backend: Backend, body: bytes
) -> None:
    status, answer = await post_event(proxy, body)
    assert (status, json.loads(answer)["error"]) == (400, "invalid_event")
    assert backend.received == []


async def test_two_different_signature_headers_are_400(proxy: Proxy, backend: Backend) -> None:
    body = event_body()
    status, _ = await post_event(proxy, body, headers=[("x-zm-signature", "v0=" + "1" * 64)])
    assert status == 400
    assert backend.received == []


async def test_a_body_over_1_mib_is_413(proxy: Proxy, backend: Backend) -> None:
    body = event_body(blob="x" * (1 << 20))
    status, answer = await post_event(proxy, body)
    assert (status, json.loads(answer)["error"]) == (413, "event_too_large")
    assert backend.received == []


async def test_url_validation_is_answered_with_the_encrypted_token(
    proxy: Proxy, backend: Backend
) -> None:
    body = event_body("endpoint.url_validation", plainToken="qgg8vlvZRS6UYooatFL8Aw")
    status, answer = await post_event(proxy, body)
    expected = hmac.new(SECRET.encode(), b"qgg8vlvZRS6UYooatFL8Aw", hashlib.sha256).hexdigest()
    assert status == 200
    assert json.loads(answer) == {
        "plainToken": "qgg8vlvZRS6UYooatFL8Aw",
        "encryptedToken": expected,
    }
    assert backend.received == []  # answered by the proxy itself


async def test_an_unsigned_url_validation_is_401(proxy: Proxy) -> None:
    body = event_body("endpoint.url_validation", plainToken="abc")
    status, _ = await post_event(proxy, body, signature="v0=" + "0" * 64)
    assert status == 401


@pytest.mark.parametrize("failure", ["down", "500", "slow"])
async def test_a_backend_that_does_not_take_the_event_makes_it_502_and_a_redelivery_goes_again(
    make_proxy: ProxyFactory, backend: Backend, failure: str
) -> None:
    url = backend.url
    if failure == "down":
        url = "http://127.0.0.1:9/zoom/events"
    elif failure == "500":
        backend.status = 500
    else:
        backend.hold = asyncio.Event()
    proxy = await make_proxy(**webhooks(forward_to=url, forward_timeout=0.3))
    body, stamp = event_body(), str(int(time.time()))
    status, answer = await post_event(proxy, body, timestamp=stamp)
    assert (status, json.loads(answer)["error"]) == (502, "backend_unavailable")
    if backend.hold is not None:
        backend.hold.set()  # the slow answer comes, too late
    backend.status, backend.hold = 200, None
    if failure == "down":
        return  # nothing listens there: Zoom's retry would meet the same 502
    status, _ = await post_event(proxy, body, timestamp=stamp)  # Zoom delivers it again
    assert status == 200
    assert [received for received, _ in backend.received] == [body, body]


async def test_a_repeated_event_is_answered_200_and_not_forwarded_again(
    proxy: Proxy, backend: Backend
) -> None:
    body, stamp = event_body(), str(int(time.time()))
    assert (await post_event(proxy, body, timestamp=stamp))[0] == 200
    assert (await post_event(proxy, body, timestamp=stamp))[0] == 200
    assert len(backend.received) == 1
    assert (await post_event(proxy, event_body("meeting.ended")))[0] == 200  # another event
    assert len(backend.received) == 2


async def test_copies_arriving_together_share_one_forward(proxy: Proxy, backend: Backend) -> None:
    backend.hold = asyncio.Event()
    body, stamp = event_body(), str(int(time.time()))
    first = asyncio.ensure_future(post_event(proxy, body, timestamp=stamp))
    await backend.arrived.wait()
    second = asyncio.ensure_future(post_event(proxy, body, timestamp=stamp))
    # The copy waits for the first delivery's outcome: no answer while it is held.
    done, _ = await asyncio.wait({second}, timeout=0.5)
    assert not done
    backend.hold.set()
    assert [(await first)[0], (await second)[0]] == [200, 200]
    assert len(backend.received) == 1


async def test_the_route_reads_no_cookie_and_is_not_screened_for_origin(
    proxy: Proxy, backend: Backend
) -> None:
    headers = [("Origin", "https://evil.example"), ("Cookie", "zoom_proxy=garbage")]
    status, _ = await post_event(proxy, event_body(), headers=headers)
    assert status == 200
    assert len(backend.received) == 1


async def test_without_forward_to_an_event_is_200_and_one_line_without_its_body(
    make_proxy: ProxyFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    proxy = await make_proxy(**webhooks())
    body = event_body("recording.completed", secret_marker="s3cr3t-body-value")
    status, _ = await post_event(proxy, body)
    assert status == 200
    lines = [record.getMessage() for record in caplog.records]
    assert "webhook event recording.completed verified" in lines
    assert not [line for line in lines if "s3cr3t-body-value" in line or SECRET in line]


async def test_events_are_counted_by_name_and_outcome(proxy: Proxy, backend: Backend) -> None:
    body, stamp = event_body(), str(int(time.time()))
    await post_event(proxy, body, timestamp=stamp)
    await post_event(proxy, body, timestamp=stamp)
    await post_event(proxy, event_body("some.new_event"))
    await post_event(proxy, event_body(), signature="v0=" + "0" * 64)
    await post_event(proxy, event_body("endpoint.url_validation", plainToken="abc"))
    metrics = await scrape(proxy)
    counted = {
        (event, outcome): value(
            metrics, "zoom_proxy_webhook_events_total", event=event, outcome=outcome
        )
        for event, outcome in [
            ("meeting.started", "forwarded"),
            ("meeting.started", "duplicate"),
            ("other", "forwarded"),
            ("unverified", "refused"),
            ("endpoint.url_validation", "validated"),
        ]
    }
    assert set(counted.values()) == {1.0}


async def test_without_a_secret_token_there_is_no_webhook_route(
    make_proxy: ProxyFactory,
) -> None:
    proxy = await make_proxy()
    status, _ = await post_event(proxy, event_body())
    assert status == 404
