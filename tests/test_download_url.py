"""Which recording download_url the proxy may fetch with a user's token (SPEC 13): the
SSRF screen, checked on its own before any route uses it."""

from __future__ import annotations

import pytest

from proxy.errors import BadDownloadUrl
from proxy.forward.download_url import (
    Origin,
    checked_download_url,
    matches_any,
    parse_origin,
)

ZOOM = (parse_origin("https://zoom.us"), parse_origin("https://*.zoom.us"))


@pytest.mark.parametrize(
    "url",
    [
        "https://zoom.us/rec/download/abc123?access_token=&play=1",
        "https://acme.zoom.us/rec/download/abc",
        "https://us06web.acme.zoom.us/rec/play/x",
        "https://ZOOM.us/rec/download/abc",
        "https://zoom.us:443/rec/download/abc",
        "https://zoom.us/rec/a/./b",
    ],
)
def test_a_recordings_download_url_is_accepted(url: str) -> None:
    assert checked_download_url(url, ZOOM).url == url


def test_the_accepted_url_names_its_origin_without_the_default_port() -> None:
    assert checked_download_url("https://Acme.zoom.us:443/rec/x", ZOOM).origin == (
        "https://acme.zoom.us"
    )


@pytest.mark.parametrize(
    "url",
    [
        "https://zoom.us.evil.test/rec/x",
        "https://evil-zoom.us/rec/x",
        "https://zoom.us@evil.test/rec/x",
        "https://evil.test\\@zoom.us/rec/x",
        "https://user:pass@zoom.us/rec/x",
        "https://zoom.us:8443/rec/x",
        "http://zoom.us/rec/x",
        "https://zoom.us/api/x",
        "https://zoom.us/rec/../oauth/token",
        "https://zoom.us/rec/%2e%2e/oauth/token",
        "https://zoom.us/rec",
        "https://zoom.us/rec/x/..",
        "//zoom.us/rec/x",
        "https:/zoom.us/rec/x",
        "https:zoom.us/rec/x",
        "zoom.us/rec/x",
        "ftp://zoom.us/rec/x",
        "https://z\u043e\u043em.us/rec/x",  # Cyrillic o twice: an IDN homograph
        "https://xn--zm-ymca.us/rec/x",
        "https://zoom.us/rec/x%0aSet-Cookie:a",
        "https://zoom.us/rec/x\nHost: evil",
        "https://zoom.us/rec/x#frag",
        "https://zoom.us/rec/x y",
        "https://zoom.us./rec/x",
        "https://.zoom.us/rec/x",
        "https://zoom.us%2eevil.test/rec/x",
        "https://zoom.us\\rec\\x",
        "https://[::1]/rec/x",
        "https://127.0.0.1/rec/x",
        "",
    ],
)
def test_anything_else_is_a_bad_download_url(url: str) -> None:
    with pytest.raises(BadDownloadUrl):
        checked_download_url(url, ZOOM)


def test_a_wildcard_is_one_or_more_whole_labels_not_the_domain_itself() -> None:
    only_subdomains = (parse_origin("https://*.zoom.us"),)
    assert matches_any("https://a.b.zoom.us/x", only_subdomains)
    assert not matches_any("https://zoom.us/x", only_subdomains)
    assert not matches_any("https://azoom.us/x", only_subdomains)


def test_a_redirect_target_matches_an_origin_whatever_its_path() -> None:
    assert matches_any("https://acme.zoom.us/anything?x", ZOOM)
    assert not matches_any("https://storage.example/rec/x", ZOOM)
    assert not matches_any("http://zoom.us/rec/x", ZOOM)


def test_an_http_origin_with_a_port_is_allowed_for_the_emulator() -> None:
    emulator = (parse_origin("http://127.0.0.1:8080"),)
    assert checked_download_url("http://127.0.0.1:8080/rec/download/1", emulator)
    with pytest.raises(BadDownloadUrl):
        checked_download_url("http://127.0.0.1:8081/rec/download/1", emulator)


@pytest.mark.parametrize(
    "text",
    ["zoom.us", "https://zoom.us/", "https://zoom.us/rec", "https://*zoom.us", "https://a_b.us"],
)
def test_a_malformed_origin_entry_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match=r"\w"):
        parse_origin(text)


def test_an_origin_prints_as_written() -> None:
    assert str(parse_origin("HTTPS://*.Zoom.US:443")) == "https://*.zoom.us"
    assert parse_origin("http://localhost:8080") == Origin("http", "localhost", 8080)
