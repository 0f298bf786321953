"""``access.*``: who may sign in."""

from __future__ import annotations

import pytest

from proxy.config import AccessSettings
from proxy.session.rules import may_sign_in
from proxy.tokens.model import User


def user(email: str = "Ada@Example.com", account_id: str = "acc-1") -> User:
    return User(id="u", email=email, first_name="A", last_name="L", account_id=account_id)


def test_empty_rules_admit_everyone() -> None:
    assert may_sign_in(user(), AccessSettings())


def test_emails_compare_whole_and_case_insensitively() -> None:
    rules = AccessSettings(allowed_emails=("ada@example.com",))
    assert may_sign_in(user("ADA@EXAMPLE.COM"), rules)
    assert not may_sign_in(user("ada@example.com.evil"), rules)
    assert not may_sign_in(user("xada@example.com"), rules)


@pytest.mark.parametrize(
    ("email", "allowed"),
    [
        ("a@example.com", True),
        ("a@EXAMPLE.com", True),
        ("a@notexample.com", False),
        ("a@sub.example.com", False),
        ("a@example.com.evil.test", False),
        ("a@evil.test@example.com", False),
        ("example.com", False),
        ("", False),
    ],
)
def test_domains_match_the_whole_part_after_the_only_at(email: str, allowed: bool) -> None:
    assert (
        may_sign_in(user(email), AccessSettings(allowed_email_domains=("example.com",))) is allowed
    )


def test_either_email_list_may_admit() -> None:
    rules = AccessSettings(allowed_emails=("x@other.test",), allowed_email_domains=("example.com",))
    assert may_sign_in(user("x@other.test"), rules)
    assert may_sign_in(user("y@example.com"), rules)
    assert not may_sign_in(user("y@other.test"), rules)


def test_account_ids_are_exact() -> None:
    rules = AccessSettings(allowed_account_ids=("acc-1",))
    assert may_sign_in(user(account_id="acc-1"), rules)
    assert not may_sign_in(user(account_id="ACC-1"), rules)
    assert not may_sign_in(user(account_id="acc-10"), rules)


def test_the_account_rule_and_the_email_rule_must_both_hold() -> None:
    rules = AccessSettings(allowed_account_ids=("acc-1",), allowed_email_domains=("example.com",))
    assert may_sign_in(user("a@example.com", "acc-1"), rules)
    assert not may_sign_in(user("a@example.com", "acc-2"), rules)
    assert not may_sign_in(user("a@other.test", "acc-1"), rules)
