"""``access.*``: which Zoom users may sign in (README, "Configuration")."""

from __future__ import annotations

from proxy.config import AccessSettings
from proxy.tokens.model import User


def may_sign_in(user: User, rules: AccessSettings) -> bool:
    """Both the account rule and the email rule must hold; empty lists allow everyone.

    The email is compared whole and case-insensitively; its domain is the part after
    its only ``@``, matched exactly (``notexample.com`` is not ``example.com``). An
    email with more than one ``@`` can mean different mailboxes to different parsers,
    so it is refused outright.
    """
    if rules.allowed_account_ids and user.account_id not in rules.allowed_account_ids:
        return False
    if not (rules.allowed_emails or rules.allowed_email_domains):
        return True
    email = user.email.lower()
    if email.count("@") != 1:
        return False
    domain = email.partition("@")[2]
    return email in rules.allowed_emails or domain in rules.allowed_email_domains
