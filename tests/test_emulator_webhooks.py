"""The Zoom emulator's webhooks: events signed as Zoom signs them, URL validation, and
``app_deauthorized`` when the user removes the app, received by a real server on loopback.

Signatures are recomputed here with ``hmac``, apart from the emulator's code.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from html.parser import HTMLParser
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient, AiohttpServer
from yarl import URL

from proxy.emulator import DEFAULT_WEBHOOK_SECRET, EmulatedUser, ZoomEmulator, s256_challenge, sign

Client = TestClient[web.Request, None]

SECRET = "secret-token-of-these-tests"
NOW = 1_700_000_000
PREFIX = "/_emulator"  # where the demo mounts the emulator: its links must be relative
REDIRECT_URI = "http://localhost:8080/auth/callback"
BASIC = aiohttp.encode_basic_auth("emulator-client-id", "emulator-client-secret")


def zoom_signature(secret: str, timestamp: str, body: bytes) -> str:
    message = b"v0:" + timestamp.encode() + b":" + body
    return "v0=" + hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def encrypted(secret: str, plain_token: str) -> str:
    return hmac.new(secret.encode(), plain_token.encode(), hashlib.sha256).hexdigest()


# --- the app's webhook endpoint ---------------------------------------------------------


@dataclass(frozen=True)
class Delivery:
    headers: dict[str, str]
    body: bytes

    @property
    def event(self) -> dict[str, Any]:
        decoded: dict[str, Any] = json.loads(self.body)
        return decoded


Answer = Callable[[Delivery], web.Response]


def answer_as_zoom_asks(delivery: Delivery) -> web.Response:
    """200; to URL validation, the plainToken and its encryptedToken by SECRET."""
    event = delivery.event
    if event["event"] != "endpoint.url_validation":
        return web.Response(status=200)
    plain = event["payload"]["plainToken"]
    return web.json_response({"plainToken": plain, "encryptedToken": encrypted(SECRET, plain)})


@dataclass
class Receiver:
    """The app's endpoint: records each request's headers and raw body."""

    url: str
    deliveries: list[Delivery]
    answer: list[Answer] = field(default_factory=lambda: [answer_as_zoom_asks])

    @property
    def events(self) -> list[str]:
        return [delivery.event["event"] for delivery in self.deliveries]


@pytest.fixture
async def receiver(aiohttp_server: AiohttpServer) -> Receiver:
    deliveries: list[Delivery] = []
    answer: list[Answer] = [answer_as_zoom_asks]

    async def hook(request: web.Request) -> web.Response:
        delivery = Delivery(dict(request.headers), await request.read())
        deliveries.append(delivery)
        return answer[0](delivery)

    app = web.Application()
    app.router.add_post("/webhooks/zoom", hook)
    server = await aiohttp_server(app, host="127.0.0.1")
    return Receiver(str(server.make_url("/webhooks/zoom")), deliveries, answer)


@pytest.fixture
def emulator(receiver: Receiver) -> ZoomEmulator:
    emulator = ZoomEmulator(clock=lambda: NOW + 0.5, auto_approve=False)
    emulator.webhook_url = receiver.url
    emulator.webhook_secret = SECRET
    return emulator


@pytest.fixture
async def client(
    aiohttp_server: AiohttpServer, aiohttp_client: AiohttpClient, emulator: ZoomEmulator
) -> Client:
    """The emulator mounted under PREFIX, as in the demo."""
    root = web.Application()
    root.add_subapp(PREFIX, emulator.app())
    return await aiohttp_client(await aiohttp_server(root, host="127.0.0.1"))


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A loopback port bound but not listening: connecting to it is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


# --- the emulator's OAuth, as an app uses it ----------------------------------------------


@dataclass(frozen=True)
class Tokens:
    access_token: str
    refresh_token: str


async def sign_in(client: Client) -> Tokens:
    verifier = secrets.token_urlsafe(48)
    form = {
        "response_type": "code",
        "client_id": "emulator-client-id",
        "redirect_uri": REDIRECT_URI,
        "code_challenge": s256_challenge(verifier),
        "code_challenge_method": "S256",
        "decision": "approve",
    }
    async with client.post(
        f"{PREFIX}/oauth/authorize", data=form, allow_redirects=False
    ) as approved:
        assert approved.status == 302
        code = URL(approved.headers["Location"]).query["code"]
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT_URI,
        "code_verifier": verifier,
    }
    status, body = await token_call(client, data)
    assert status == 200, body
    return Tokens(body["access_token"], body["refresh_token"])


async def token_call(client: Client, data: dict[str, str]) -> tuple[int, Any]:
    headers = {"Authorization": BASIC}
    async with client.post(f"{PREFIX}/oauth/token", data=data, headers=headers) as resp:
        return resp.status, await resp.json(content_type=None)


async def refresh(client: Client, refresh_token: str) -> tuple[int, Any]:
    return await token_call(client, {"grant_type": "refresh_token", "refresh_token": refresh_token})


async def users_me(client: Client, access_token: str) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {access_token}"}
    async with client.get(f"{PREFIX}/v2/users/me", headers=headers) as resp:
        return resp.status, await resp.json(content_type=None)


# --- pages, read the way a browser reads them ---------------------------------------------


class PageParser(HTMLParser):
    """Each form's (method, action, button labels), and each link's (text, href)."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[tuple[str, str, list[str]]] = []
        self.links: list[tuple[str, str]] = []
        self._text: list[str] | None = None
        self._href = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attr = {name: value or "" for name, value in attrs}
        if tag == "form":
            self.forms.append((attr.get("method", "get").lower(), attr.get("action", ""), []))
        elif tag in ("button", "a"):
            self._text, self._href = [], attr.get("href", "")

    def handle_data(self, data: str) -> None:
        if self._text is not None:
            self._text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if self._text is None:
            return
        text = "".join(self._text).strip()
        if tag == "button" and self.forms:
            self.forms[-1][2].append(text)
        elif tag == "a":
            self.links.append((text, self._href))
        self._text = None


async def get_page(client: Client, path: str) -> tuple[URL, PageParser]:
    async with client.get(path) as resp:
        assert resp.status == 200
        assert resp.content_type == "text/html"
        parser = PageParser()
        parser.feed(await resp.text())
        return resp.url, parser


# --- signing ------------------------------------------------------------------------------


def test_sign_matches_a_known_vector() -> None:
    body = b'{"event":"meeting.started","payload":{}}'
    by_hand = hmac.new(b"known-secret", b"v0:1700000000:" + body, hashlib.sha256).hexdigest()

    assert sign("known-secret", "1700000000", body) == f"v0={by_hand}"
    assert by_hand == "e817745ce6bd60a0f108e770d849bd361cd71151557e19c16c9a9d4c2d0f6d9e"


async def test_a_sent_event_is_signed_as_zoom_signs_it(
    emulator: ZoomEmulator, receiver: Receiver
) -> None:
    payload = {"account_id": "a-1", "object": {"id": 85746065432, "topic": "Weekly"}}

    status = await emulator.send_event("meeting.started", payload)

    assert status == 200
    [delivery] = receiver.deliveries
    timestamp = delivery.headers["x-zm-request-timestamp"]
    assert timestamp == str(NOW)
    assert delivery.headers["x-zm-signature"] == zoom_signature(SECRET, timestamp, delivery.body)
    assert delivery.headers["Content-Type"].startswith("application/json")
    assert delivery.event == {
        "event": "meeting.started",
        "event_ts": NOW * 1000 + 500,
        "payload": payload,
    }
    assert emulator.sent_events == [("meeting.started", 200)]


async def test_a_sent_event_is_signed_at_the_timestamp_given(
    emulator: ZoomEmulator, receiver: Receiver
) -> None:
    await emulator.send_event("meeting.ended", {}, timestamp=NOW - 3600)

    [delivery] = receiver.deliveries
    assert delivery.headers["x-zm-request-timestamp"] == str(NOW - 3600)
    expected = zoom_signature(SECRET, str(NOW - 3600), delivery.body)
    assert delivery.headers["x-zm-signature"] == expected


async def test_events_are_signed_with_the_default_secret_unless_changed(
    receiver: Receiver,
) -> None:
    emulator = ZoomEmulator()
    emulator.webhook_url = receiver.url

    await emulator.send_event("meeting.started", {})

    [delivery] = receiver.deliveries
    timestamp = delivery.headers["x-zm-request-timestamp"]
    expected = zoom_signature("emulator-webhook-secret-token", timestamp, delivery.body)
    assert DEFAULT_WEBHOOK_SECRET == "emulator-webhook-secret-token"
    assert delivery.headers["x-zm-signature"] == expected


async def test_an_unreachable_webhook_url_gives_status_none(
    emulator: ZoomEmulator, closed_port: int
) -> None:
    emulator.webhook_url = f"http://127.0.0.1:{closed_port}/webhooks/zoom"

    status = await emulator.send_event("meeting.started", {})

    assert status is None
    assert emulator.sent_events == [("meeting.started", None)]


async def test_no_event_is_sent_without_a_webhook_url(
    emulator: ZoomEmulator, receiver: Receiver
) -> None:
    emulator.webhook_url = None

    assert await emulator.send_event("meeting.started", {}) is None
    assert receiver.deliveries == []
    assert emulator.sent_events == []


# --- URL validation -------------------------------------------------------------------------


async def test_validate_endpoint_is_true_against_a_correct_answer(
    emulator: ZoomEmulator, receiver: Receiver
) -> None:
    assert await emulator.validate_endpoint() is True

    [delivery] = receiver.deliveries
    assert delivery.event["event"] == "endpoint.url_validation"
    assert delivery.event["payload"]["plainToken"]
    timestamp = delivery.headers["x-zm-request-timestamp"]
    assert delivery.headers["x-zm-signature"] == zoom_signature(SECRET, timestamp, delivery.body)
    assert emulator.sent_events == [("endpoint.url_validation", 200)]


async def test_validate_endpoint_is_false_against_a_wrong_encrypted_token(
    emulator: ZoomEmulator, receiver: Receiver
) -> None:
    def wrong(delivery: Delivery) -> web.Response:
        plain = delivery.event["payload"]["plainToken"]
        return web.json_response(
            {"plainToken": plain, "encryptedToken": encrypted("another-secret", plain)}
        )

    receiver.answer[0] = wrong

    assert await emulator.validate_endpoint() is False
    assert receiver.events == ["endpoint.url_validation"]


# --- app_deauthorized -------------------------------------------------------------------------


async def test_deauthorize_revokes_the_users_tokens(client: Client, emulator: ZoomEmulator) -> None:
    tokens = await sign_in(client)
    assert (await users_me(client, tokens.access_token))[0] == 200

    await emulator.deauthorize(emulator.user.id)

    assert await refresh(client, tokens.refresh_token) == (
        400,
        {"reason": "Invalid Token!", "error": "invalid_grant"},
    )
    status, body = await users_me(client, tokens.access_token)
    assert (status, body["code"]) == (401, 124)
    assert emulator.counters["deauthorized"] == 1


async def test_deauthorize_leaves_other_users_tokens_working(
    client: Client, emulator: ZoomEmulator
) -> None:
    ada = emulator.user
    emulator.user = EmulatedUser("other-user-id", "Grace", "Hopper", "grace@example.com", "acc-2")
    grace = await sign_in(client)

    await emulator.deauthorize(ada.id)

    assert (await users_me(client, grace.access_token))[0] == 200
    assert (await refresh(client, grace.refresh_token))[0] == 200


async def test_deauthorize_sends_app_deauthorized_with_the_users_id(
    emulator: ZoomEmulator, receiver: Receiver
) -> None:
    user = emulator.user

    status = await emulator.deauthorize(user.id)

    assert status == 200
    [delivery] = receiver.deliveries
    timestamp = delivery.headers["x-zm-request-timestamp"]
    assert delivery.headers["x-zm-signature"] == zoom_signature(SECRET, timestamp, delivery.body)
    event = delivery.event
    assert event["event"] == "app_deauthorized"
    payload = event["payload"]
    assert payload["user_id"] == user.id
    assert payload["account_id"] == user.account_id
    assert payload["client_id"] == emulator.client_id
    assert isinstance(payload["signature"], str)
    assert payload["signature"]
    when = payload["deauthorization_time"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", when), when
    parsed = datetime.fromisoformat(when.replace("Z", "+00:00"))
    assert parsed == datetime.fromtimestamp(NOW + 0.5, UTC)
    assert emulator.sent_events == [("app_deauthorized", 200)]


# --- the control route ------------------------------------------------------------------------


async def test_the_control_route_sends_the_event_and_reports_the_status(
    client: Client, receiver: Receiver
) -> None:
    receiver.answer[0] = lambda delivery: web.Response(status=202)
    sent = {"event": "recording.completed", "payload": {"object": {"id": 1}}, "timestamp": 12345}

    async with client.post(f"{PREFIX}/_test/webhooks/send", json=sent) as resp:
        assert resp.status == 200
        assert await resp.json() == {"status": 202}

    [delivery] = receiver.deliveries
    assert delivery.event["event"] == "recording.completed"
    assert delivery.event["payload"] == {"object": {"id": 1}}
    assert delivery.headers["x-zm-request-timestamp"] == "12345"
    assert delivery.headers["x-zm-signature"] == zoom_signature(SECRET, "12345", delivery.body)


async def test_the_control_route_reports_null_for_an_unreachable_endpoint(
    client: Client, emulator: ZoomEmulator, closed_port: int
) -> None:
    emulator.webhook_url = f"http://127.0.0.1:{closed_port}/webhooks/zoom"
    sent = {"event": "meeting.started", "payload": {}}

    async with client.post(f"{PREFIX}/_test/webhooks/send", json=sent) as resp:
        assert resp.status == 200
        assert await resp.json() == {"status": None}


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"\xff\xfe",
        b"[]",
        b'{"payload": {}}',
        b'{"event": "meeting.started"}',
        b'{"event": 7, "payload": {}}',
        b'{"event": "meeting.started", "payload": []}',
        b'{"event": "meeting.started", "payload": {}, "timestamp": "now"}',
        b'{"event": "meeting.started", "payload": {}, "timestamp": true}',
        b"[" * 100_000,
    ],
)
async def test_the_control_route_answers_400_to_bad_json(
    client: Client, receiver: Receiver, body: bytes
) -> None:
    headers = {"Content-Type": "application/json"}
    async with client.post(f"{PREFIX}/_test/webhooks/send", data=body, headers=headers) as resp:
        assert resp.status == 400
        assert "error" in await resp.json()
    assert receiver.deliveries == []


# --- the account page -------------------------------------------------------------------------


async def test_the_account_page_form_deauthorizes(
    client: Client, emulator: ZoomEmulator, receiver: Receiver
) -> None:
    tokens = await sign_in(client)
    page_url, account = await get_page(client, f"{PREFIX}/account")
    [(method, action, buttons)] = account.forms
    assert (method, action, buttons) == ("post", "account/deauthorize", ["Remove the app"])

    async with client.post(page_url.join(URL(action)).relative()) as resp:
        assert resp.status == 200
        assert "HTTP 200" in await resp.text()

    assert receiver.events == ["app_deauthorized"]
    assert receiver.deliveries[0].event["payload"]["user_id"] == emulator.user.id
    assert (await users_me(client, tokens.access_token))[0] == 401


async def test_the_account_page_shows_the_user(client: Client, emulator: ZoomEmulator) -> None:
    async with client.get(f"{PREFIX}/account") as resp:
        page = await resp.text()

    assert "Ada Lovelace" in page
    assert emulator.user.email in page


async def test_the_account_page_offers_no_removal_without_a_webhook_url(
    client: Client, emulator: ZoomEmulator
) -> None:
    emulator.webhook_url = None

    _, account = await get_page(client, f"{PREFIX}/account")

    assert account.forms == []


async def test_the_removal_page_says_when_the_app_could_not_be_reached(
    client: Client, emulator: ZoomEmulator, closed_port: int
) -> None:
    emulator.webhook_url = f"http://127.0.0.1:{closed_port}/webhooks/zoom"

    async with client.post(f"{PREFIX}/account/deauthorize") as resp:
        assert resp.status == 200
        assert "could not be reached" in await resp.text()
    assert emulator.counters["deauthorized"] == 1


async def test_the_consent_page_links_to_the_account_page(client: Client) -> None:
    params = {
        "response_type": "code",
        "client_id": "emulator-client-id",
        "redirect_uri": REDIRECT_URI,
        "code_challenge": s256_challenge(secrets.token_urlsafe(48)),
        "code_challenge_method": "S256",
    }
    consent_url, consent = await get_page(
        client, str(URL(f"{PREFIX}/oauth/authorize").with_query(params))
    )
    [href] = [
        href for text, href in consent.links if text == "Remove this app from your Zoom account"
    ]

    target = consent_url.join(URL(href))

    assert target.path == f"{PREFIX}/account"
    _, account = await get_page(client, str(target.relative()))
    assert account.forms[0][2] == ["Remove the app"]
