"""Clients nobody here wrote, and the request shapes of Zoom's published API, through the
proxy: what they send must reach Zoom byte for byte.

httpx stands in for a third-party Zoom client: its base URL is the proxy's ``/api``,
and it signs in and carries the session cookie as any HTTP client with a cookie jar
does. The shapes come from Zoom's Meeting API reference: meeting UUIDs in every
documented encoding, emails with ``@`` and ``+``, comma and array queries, UTF-8.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from urllib.parse import quote

import httpx
import pytest

from tests.helpers.proxies import Proxy
from tests.helpers.raw_http import raw_request

pytestmark = pytest.mark.both_transports

#: Meeting UUIDs as Zoom issues them (base64 of 16 bytes), one of each kind its API
#: reference names: plain, with "/" inside (encoded once), starting with "/" or
#: holding "//" (encoded twice), and with "+" (which "%2B" keeps from being a space).
UUIDS = {
    "plain": "4444AAAiAAAAAiAiAiiAii==",
    "slash-inside": "Gx3Zp9/kQ0a1b2c3d4e5f6==",
    "leading-slash": "/ajXp112QmuoKj4854875==",
    "double-slash": "ab//cdQmuoKj4854875xy==",
    "plus": "k+Q0a1b2c3d4e5f6Gx3Zp9==",
}


def encoded(uuid: str) -> str:
    """A UUID as Zoom's reference asks clients to put it in a path."""
    once = quote(uuid, safe="")
    return quote(once, safe="") if uuid.startswith("/") or "//" in uuid else once


@pytest.fixture
async def zoom_client(signed_in: Proxy) -> AsyncIterator[httpx.AsyncClient]:
    """httpx, signed in through the proxy the way a browser is (its own cookie jar)."""
    async with httpx.AsyncClient(base_url=f"{signed_in.url}/api", timeout=10) as client:
        response = await client.get(
            f"{signed_in.url}/auth/login", params={"next": "/"}, follow_redirects=True
        )
        assert response.status_code == 200
        assert response.url.path == "/"
        yield client


async def test_a_meetings_whole_life_through_a_third_party_client(
    signed_in: Proxy, zoom_client: httpx.AsyncClient
) -> None:
    """Create, get, update, list and delete, with the access token expiring midway."""
    emulator = signed_in.zoom.emulator
    created = await zoom_client.post("/users/me/meetings", json={"topic": "Standup"})
    assert created.status_code == 201
    meeting_id = created.json()["id"]

    emulator.expire_access_tokens()
    fetched = await zoom_client.get(f"/meetings/{meeting_id}")
    assert fetched.status_code == 200
    assert fetched.json()["topic"] == "Standup"
    assert emulator.counters["refresh_ok"] == 1

    updated = await zoom_client.patch(f"/meetings/{meeting_id}", json={"topic": "Retro"})
    assert updated.status_code == 204
    listed = await zoom_client.get("/users/me/meetings", params={"type": "scheduled"})
    assert [m["topic"] for m in listed.json()["meetings"]] == ["Retro"]

    deleted = await zoom_client.delete(f"/meetings/{meeting_id}")
    assert deleted.status_code == 204
    gone = await zoom_client.get(f"/meetings/{meeting_id}")
    assert (gone.status_code, gone.json()["code"]) == (404, 3001)
    assert emulator.counters["refresh_ok"] == 1


@pytest.mark.parametrize("kind", list(UUIDS))
async def test_a_past_meeting_is_found_by_its_uuid_in_every_documented_encoding(
    signed_in: Proxy, zoom_client: httpx.AsyncClient, kind: str
) -> None:
    created = await zoom_client.post("/users/me/meetings", json={"topic": kind})
    [meeting] = signed_in.zoom.emulator.meetings[created.json()["host_id"]]
    meeting["uuid"] = UUIDS[kind]
    response = await zoom_client.get(f"/past_meetings/{encoded(UUIDS[kind])}")
    assert response.status_code == 200
    assert response.json()["uuid"] == UUIDS[kind]
    assert signed_in.zoom.emulator.api_requests[-1].raw_path == (
        f"/v2/past_meetings/{encoded(UUIDS[kind])}"
    )


#: Request targets built from Zoom's published API description, as clients send them.
SHAPES = [
    *(f"/past_meetings/{encoded(uuid)}/participants?page_size=30" for uuid in UUIDS.values()),
    *(f"/meetings/{encoded(uuid)}/recordings" for uuid in UUIDS.values()),
    "/past_meetings/Gx3Zp9%2fkQ0a1b2c3d4e5f6%3d%3d",
    "/users/jane.doe+zoom@example.com",
    "/users/jane.doe%2Bzoom%40example.com/meetings?type=upcoming",
    "/users?status=active&page_size=300&role_id=0&next_page_token=IAfJX3jsOLW7w3dokmFl84zOa0MAVGyMEB2",
    "/metrics/meetings?type=past&from=2026-11-01&to=2026-12-01&include_fields=tracking_fields,custom_keys",
    "/meetings/85746065432?occurrence_id=1648194360000,1648280760000",
    "/report/users/me/meetings?from=2026-11-01&to=2026-12-01&ids[]=1&ids[]=2",
    "/report/users/me/meetings?ids%5B%5D=1&ids%5B%5D=2",
    "/users/me/meetings?search_key=r%C3%A9union%20d%27%C3%A9quipe",
    "/users/%C3%BC%C3%B1%C3%AFcode%40example.com",
    "/users/me/meetings?topic=%E4%BC%9A%E8%AE%AE&x=a+b",
    "/im/users/me/chat/messages?to_contact=jane%2Bzoom%40example.com&date=2026-12-01",
    "/webinars/93123/registrants?occurrence_id=1648194360000&status=pending",
    "/meetings/85746065432/recordings?include_fields=download_access_token&ttl=604800",
    "/phone/users/me/call_logs?from=2026-11-01&to=2026-12-01&type=all&path=%2F",
    "/users/me/meetings?next_page_token=a%2Fb%3D&page_size=30",
    "/users/me;v=1/settings?option=meeting_authentication",
    "/users/~jane/settings",
]


@pytest.mark.parametrize("target", SHAPES)
async def test_zoom_request_shapes_reach_zoom_byte_for_byte(signed_in: Proxy, target: str) -> None:
    emulator = signed_in.zoom.emulator
    before = len(emulator.api_requests)
    answer = await raw_request(
        signed_in.url,
        (
            f"GET /api{target} HTTP/1.1\r\nHost: x\r\nCookie: {signed_in.cookie_header()}\r\n"
            "Connection: close\r\n\r\n"
        ).encode(),
    )
    assert not answer.startswith(b"HTTP/1.1 400"), answer[:200]
    assert len(emulator.api_requests) == before + 1
    assert emulator.api_requests[-1].raw_path == f"/v2{target}"


@pytest.mark.parametrize("target", SHAPES)
async def test_what_httpx_sends_for_a_zoom_shape_reaches_zoom_unchanged(
    signed_in: Proxy, zoom_client: httpx.AsyncClient, target: str
) -> None:
    """httpx may normalise a target (it encodes ``[``, say); whatever it puts on the
    wire is what Zoom gets."""
    request = zoom_client.build_request("GET", f"{signed_in.url}/api{target}")
    await zoom_client.send(request)
    sent = request.url.raw_path.decode("ascii")
    assert signed_in.zoom.emulator.api_requests[-1].raw_path == "/v2" + sent.removeprefix("/api")
