"""Service callers' allow rules (SPEC 12): ``METHOD PATTERN`` matched segment by segment
on the raw path after ``/api``; by example, and against a plainly written reference."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.callers.rules import AllowRule, allowed, parse_rule


def allows(rule: str, method: str, path: str) -> bool:
    return allowed([parse_rule(rule)], method, path)


def test_a_star_matches_one_segment() -> None:
    assert allows("GET /users/*", "GET", "/users/me")


@pytest.mark.parametrize("path", ["/users/", "/users//x", "/users/a/b", "/users"])
def test_a_star_never_matches_an_empty_segment_or_a_slash(path: str) -> None:
    assert not allows("GET /users/*", "GET", path)


@pytest.mark.parametrize("path", ["/report/a", "/report/a/b/c", "/report/a%2Fb"])
def test_a_double_star_matches_one_or_more_segments(path: str) -> None:
    assert allows("GET /report/**", "GET", path)


@pytest.mark.parametrize("path", ["/report", "/report/", "/reports/a", "/report/a//b"])
def test_a_double_star_needs_at_least_one_non_empty_segment(path: str) -> None:
    assert not allows("GET /report/**", "GET", path)


@pytest.mark.parametrize(
    ("rule", "path"),
    [
        ("GET /past_meetings/*", "/past_meetings/Gx3Zp9%2FkQ0%3D%3D"),
        ("GET /past_meetings/*/participants", "/past_meetings/ab%2Fcd/participants"),
    ],
)
def test_an_encoded_slash_stays_inside_its_segment(rule: str, path: str) -> None:
    assert allows(rule, "GET", path)


def test_a_literal_slash_still_separates_segments() -> None:
    assert not allows("GET /past_meetings/*", "GET", "/past_meetings/Gx3Zp9/kQ0")


@pytest.mark.parametrize("path", ["/Users/me", "/users/ME", "/users/me;x=1", "/users/m"])
def test_literal_segments_are_byte_exact_and_case_sensitive(path: str) -> None:
    assert not allows("GET /users/me", "GET", path)


@pytest.mark.parametrize(
    ("rule", "path"),
    [("GET /users/~jane", "/users/%7Ejane"), ("GET /users/%7Ejane", "/users/~jane")],
)
def test_a_literal_is_never_decoded(rule: str, path: str) -> None:
    assert not allows(rule, "GET", path)


def test_percent_escapes_are_compared_as_written() -> None:
    assert allows("GET /users/%7Ejane", "GET", "/users/%7Ejane")
    assert not allows("GET /users/%7Ejane", "GET", "/users/%7ejane")


@pytest.mark.parametrize("method", ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
def test_a_star_method_allows_every_method(method: str) -> None:
    assert allows("* /users/me", method, "/users/me")


def test_a_get_rule_does_not_allow_head() -> None:
    assert not allows("GET /users/me", "HEAD", "/users/me")


def test_head_is_allowed_only_when_written() -> None:
    assert allowed([parse_rule("GET /a"), parse_rule("HEAD /a")], "HEAD", "/a")


def test_a_method_is_compared_exactly() -> None:
    assert not allows("GET /users/me", "get", "/users/me")


@pytest.mark.parametrize("path", ["/a", "/a/b", "/%2F"])
def test_a_bare_double_star_allows_any_path_with_a_segment(path: str) -> None:
    assert allows("GET /**", "GET", path)


@pytest.mark.parametrize("path", ["/", "", "users/me", "//", "/a/"])
def test_a_path_without_a_leading_slash_or_with_an_empty_segment_is_never_allowed(
    path: str,
) -> None:
    assert not allows("* /**", "GET", path)


def test_no_rules_allow_nothing() -> None:
    assert not allowed((), "GET", "/users/me")


def test_any_one_rule_is_enough() -> None:
    rules = [parse_rule("GET /users/me"), parse_rule("POST /users/*/meetings")]
    assert allowed(rules, "POST", "/users/me/meetings")
    assert not allowed(rules, "POST", "/users/me")


def test_a_rule_keeps_its_parts_and_its_text() -> None:
    assert parse_rule("POST /users/*/meetings") == AllowRule(
        "POST", ("users", "*", "meetings"), "POST /users/*/meetings"
    )


@pytest.mark.parametrize(
    "rule",
    [
        "",
        "GET",
        "/users/me",
        "GET /a extra",
        "GET  /a",
        " GET /a",
        "GET /a ",
        "GET\t/a",
        "get /a",
        "Get /a",
        "G-T /a",
        "GET1 /a",
        "** /a",
        "GET a/b",
        "GET *",
        "GET /",
        "GET //",
        "GET /a//b",
        "GET /a/",
        "GET /**/meetings",
        "GET /a/**/**",
        "GET /**/*",
        "GET /a*",
        "GET /*a",
        "GET /a*b",
        "GET /***",
        "GET /a?x=1",
        "GET /a?",
        "GET /a#x",
        "GET /a\tb",
        "GET /a\nb",
        "GET /a\r",
        "GET /a\x00",
        "GET /a\x7f",
        "GET /a\u00a0b",
        "GET /caf\u00e9",
        "GET /users/{userId}",
        "GET /a%",
        "GET /a%2",
        "GET /a%zz",
        "GET /a\\b",
    ],
)
def test_a_malformed_rule_is_refused_with_a_printable_reason(rule: str) -> None:
    with pytest.raises(ValueError, match=r"\S") as info:
        parse_rule(rule)
    # The config checker prints it after the key path: no raw control characters.
    assert str(info.value).isprintable()


# --- against a reference matcher -------------------------------------------------------


def reference(rule_method: str, pattern: list[str], method: str, path: str) -> bool:
    """Written plainly, to be obviously right: recursion over the two segment lists."""

    def match(want: list[str], have: list[str]) -> bool:
        if not want:
            return not have
        if want[0] == "**":
            # One or more non-empty segments, then whatever the rest of the pattern wants.
            return any(
                all(have[:taken]) and match(want[1:], have[taken:])
                for taken in range(1, len(have) + 1)
            )
        if not have or have[0] == "":
            return False
        if want[0] == "*" or want[0] == have[0]:
            return match(want[1:], have[1:])
        return False

    if rule_method != "*" and rule_method != method:
        return False
    if not path.startswith("/"):
        return False
    return match(pattern, path[1:].split("/"))


METHODS = ["GET", "HEAD", "POST"]
#: Literal segments share encoded slashes, a case and an escape's case with the paths.
PATTERN_SEGMENTS = st.sampled_from(["a", "b", "A", "%2F", "x%2Fy", "*"])
PATH_SEGMENTS = st.sampled_from(["a", "b", "A", "%2F", "%2f", "x%2Fy", "x", "y", "*", ""])

RULES = st.builds(
    lambda method, pattern, double_star: (
        method,
        [*pattern, "**"] if double_star or not pattern else pattern,
    ),
    st.sampled_from([*METHODS, "*"]),
    st.lists(PATTERN_SEGMENTS, max_size=4),
    st.booleans(),
)


@settings(max_examples=500, deadline=None)
@given(
    rules=st.lists(RULES, max_size=3),
    method=st.sampled_from(METHODS),
    path=st.lists(PATH_SEGMENTS, min_size=1, max_size=5).map(lambda have: "/" + "/".join(have)),
)
def test_matching_agrees_with_the_reference(
    rules: list[tuple[str, list[str]]], method: str, path: str
) -> None:
    parsed = [parse_rule(f"{rule_method} /{'/'.join(pattern)}") for rule_method, pattern in rules]
    for rule, (rule_method, pattern) in zip(parsed, rules, strict=True):
        assert rule.segments == tuple(pattern)
        assert rule.allows(method, path) == reference(rule_method, pattern, method, path)
    assert allowed(parsed, method, path) == any(
        reference(rule_method, pattern, method, path) for rule_method, pattern in rules
    )
