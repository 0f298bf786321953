"""Open-redirect payloads for ``next``, generated family by family.

After sign-in the proxy sends the browser to ``next``, so ``next`` must only ever be a
local path (``proxy.web.untrusted.safe_next``). This module generates the values an
attacker would try instead, so that the tests need nothing outside the repository.

Some checkouts keep a public list beside the repository,
``../shared/testdata/openredirects.txt`` (:data:`SHARED_FILE_SIZE` payloads). It is
optional. The corpus here generates every one of its lines literally, byte for byte,
and is larger; ``tests/test_security.py`` checks both whenever the file is present.

Most families are cross products: a few *destinations* (a foreign host, bare or
disguised behind a trusted-looking host as ``trusted@evil``) combined with the
prefixes, encodings and suffixes that URL parsers disagree about. ``example.com``
stands for any other site and, in ``trusted@evil``, for a host an allow-list trusts.
The families, and why each matters:

``empty``
    The empty value: it must fall back to ``/`` like everything else refused.
``scheme``
    ``javascript:``, ``data:`` and ``vbscript:`` targets run script or show attacker
    content under our origin. Spelled in mixed case (schemes are case-insensitive),
    with tab, CR, LF or NUL inside the scheme, raw or percent-encoded (browsers drop
    tab, CR and LF anywhere), as protocol-relative ``//javascript:``, as backslash
    escapes and HTML character references (for a value echoed into a script or an
    attribute), and as string break-outs.
``authority``
    Protocol-relative ``//host`` and its relatives ``///``, ``////`` and ``/////``,
    ``https://``, and ``/https://`` (a naive "strip the leading slash" yields an
    absolute URL), then the doubled ``https:///``, ``/https:///``, ``//https://`` and
    ``//https:///`` that lenient parsers accept. Each is followed by a suffix that
    hides the host from a check of the value's end: ``/``, ``//`` and encoded dot
    segments (``/%2e%2e``, ``/%2f..``).
``separator``
    A tab or a backslash between the slashes, percent-encoded (``/%09/host``,
    ``//%5chost``): browsers drop the tab and read ``\\`` as ``/``, so both become
    ``//host`` after one decoding.
``encoded``
    Encoded and double-encoded slashes and backslashes (``%2f``, ``%2F``, ``%252f``,
    ``%5c``, ``%5C``, ``%255c``) and entirely percent-encoded URLs, also
    double-encoded: one more decoding anywhere (a front proxy, a framework, a later
    redirect) turns them into ``//host`` or ``http://host``.
``backslash``
    ``/\\host``, ``\\/host``, ``\\\\host`` and longer mixes: a check for ``//``
    misses them, a browser reads them as ``//host``.
``whitespace``
    Tab, CR, LF and NUL, raw or percent-encoded, encoded vertical tab and form feed,
    and a raw space, before or between the slashes: browsers strip or drop them, and
    CR/LF would also split the ``Location`` header.
``slashless``
    ``http:host``, ``https:/host``, ``https:\\\\host``, ``https:///host``: a special
    scheme names a host for a browser whatever the number of slashes or backslashes.
``userinfo``
    ``@`` tricks: ``trusted@evil`` hides the real host behind a trusted-looking one;
    ``+@``, ``;@``, ``:@``, ``\\@``, ``%40``, ``:80#@`` and ``:80?@`` set parsers
    that disagree on where the userinfo ends against each other; junk userinfo with
    odd characters; a bare ``@host`` and a leading ``.host``.
``confusion``
    Host confusion: an encoded ``.``, ``#``, ``?``, ``//`` or ``\\\\`` between an
    evil and a trusted host, and a trailing ``?``, ``#`` or ``;`` that ends the host
    for some parsers but not for others.
``ip``
    The attacker's IPv4 address as one decimal or hex number, in dotted octal (also
    zero-padded), in dotted hex, in mixed forms with 16 and 24 bit parts, with octets
    above 255, and as IPv4-compatible and IPv4-mapped IPv6: an allow-list of names or
    of dotted quads misses them all. After ``http://`` and ``http:``, with and
    without junk or trusted-looking userinfo, and after ``//``.
``ports``
    Explicit ports (default, zero-padded, the highest), an empty port and a trailing
    dot on the host: an allow-list comparing ``host:port`` strings misses them.
``dot_segments``
    ``/./``, ``/../`` and their encoded forms before a backslash or a slash: path
    normalisation can collapse them into ``//host``.
``lookalike``
    Unicode that a browser's IDNA or an NFKC step maps to ``/``, ``\\`` or ``.``:
    FULLWIDTH SOLIDUS and REVERSE SOLIDUS (U+FF0F, U+FF3C, raw and encoded), the
    IDEOGRAPHIC, HALFWIDTH IDEOGRAPHIC and FULLWIDTH FULL STOP (U+3002, U+FF61,
    U+FF0E) in place of the host's dot, the kana marks U+3031, U+3035, U+309D,
    U+30FC and U+FF70 that some IDN code turns into a slash, NUL inside the host,
    fullwidth letters, and a Cyrillic homograph of a trusted host in Unicode and in
    punycode (``xn--``).
``nested``
    Redirect parameters of a target that redirects again (``/?url=//host``,
    ``/redirect?next=...``), a URL inside the path (``/http://host``,
    ``https://trusted/https://evil/``) and ``trusted@https:///evil``.
``found``
    Payloads reported in the wild that follow none of the patterns above, kept
    verbatim because their exact bytes are the point.

:func:`payloads` returns all families in one list, deduplicated, in a fixed order.
"""

from __future__ import annotations

import base64
from pathlib import Path

SHARED_FILE = Path(__file__).resolve().parents[3] / "shared" / "testdata" / "openredirects.txt"
"""An optional public list some checkouts keep beside the repository; never required."""

SHARED_FILE_SIZE = 559
"""How many payloads the shared list holds: the corpus must never be smaller."""

TRUSTED = ("example.com", "www.whitelisteddomain.tld")
"""Hosts a naive allow-list would accept; an attacker hides behind them."""

EVIL = ("google.com", "localdomain.pw", "www.google.com")
"""The attacker's hosts."""

SITES = ("example.com", *EVIL)
"""Hosts that are not this proxy: a redirect to any of them is open."""

PAIRS = (
    ("example.com", "google.com"),
    ("www.whitelisteddomain.tld", "google.com"),
    ("www.whitelisteddomain.tld", "localdomain.pw"),
    ("www.whitelisteddomain.tld", "www.google.com"),
)
"""(trusted, evil): an evil host disguised by a trusted-looking one."""

DESTINATIONS = (*SITES, *(f"{trusted}@{evil}" for trusted, evil in PAIRS))
"""Where a redirect may go: a foreign host, bare or as ``trusted@evil``."""

JS_TARGETS = ("javascript:alert(1)", "javascript:alert(1);")

EVIL_IP = "216.58.214.206"
"""The attacker's IPv4 address, spelled in every way a URL parser accepts."""

JUNK_USERINFO = ("3H6k7lIAiqjfNeN", "XY>.7d8T\\205pZM")
"""Userinfo that looks random or holds characters parsers treat differently."""

HIDING_SUFFIXES = ("/%2e%2e", "/%2e%2e%2f", "/%2f%2e%2e", "/%2f..", "//")
"""After the host: encoded dot segments and an empty segment, to hide it from a check."""

PATH_SUFFIXES = ("", "/", *HIDING_SUFFIXES)

ENCODED_SLASHES = ("%2f", "%2F", "%252f", "%5c", "%5C", "%255c")

WHITESPACE = ("%09", "%0a", "%0d", "%0d%0a", "%00", "%0b", "%0c", "\t", "\n", "\r", "\x00", " ")

SCHEME_SPELLINGS = ("javascript", "JaVaScRiPt", "jaVAscript", "javascripT")


def _percent_all(text: str, *, upper: bool = False) -> str:
    """Every byte of ``text`` percent-encoded."""
    return "".join((f"%{b:02X}" if upper else f"%{b:02x}") for b in text.encode())


def _escaped(text: str, style: str, *, upper: bool) -> str:
    """``text`` as backslash escapes: ``octal`` (``\\152``), ``x`` (``\\x6a``), ``u``."""
    if style == "octal":
        return "".join(f"\\{ord(c):03o}" for c in text)
    width = 2 if style == "x" else 4
    return "".join(
        f"\\{style}{ord(c):0{width}X}" if upper else f"\\{style}{ord(c):0{width}x}" for c in text
    )


def _empty() -> list[str]:
    return [""]


def _scheme() -> list[str]:
    bodies = [
        ":alert(1)",
        ":alert(1);",
        "://%0aalert(1)",
        "://anything%0D%0A%0D%0Awindow.alert(document.cookie)",
        *(f"://{trusted}?%a0alert%281%29" for trusted in TRUSTED),
        *(f"://https://{trusted}/?z=%0Aalert(1)" for trusted in TRUSTED),
        *(f"://{trusted}//%0d%0aalert(1);//" for trusted in TRUSTED),
    ]
    found = [spelling + body for spelling in SCHEME_SPELLINGS for body in bodies]
    # Characters browsers drop inside a scheme, once and on both sides of "script".
    for space in ("%09", "%0a", "%0d", "%0d%0a", "%00", "\t", "\n", "\r"):
        # alert(0) marks the doubled form, as in the shared list.
        found += [f"java{space}script:alert(1)", f"java{space}script{space}:alert(0)"]
    # The scheme as escapes, for a value that lands in a script string.
    for style in ("octal", "x", "u"):
        for word_upper in (False, True):
            for colon_upper in (False, True):
                found.append(
                    _escaped("javascript", style, upper=word_upper)
                    + _escaped(":", style, upper=colon_upper)
                    + "alert(1)"
                )
    # An HTML character reference for the "c", raw and with "&#" percent-encoded.
    for reference in ("&#99;", "&#x63;"):
        for spell in (reference, reference.replace("&", "%26").replace("#", "%23")):
            found.append(f"Javas{spell}ript:alert(1)")
    script = '<script>alert("XSS")</script>'
    page = (
        "<html><script>document.write(document.domain);</script>"
        "<iframe/src=xxxxx>aaaa</iframe></html>"
    )
    for data in ("data", "DATA", "Data"):
        found += [
            f"{data}:text/html;base64,{base64.b64encode(script.encode()).decode()}",
            f"{data}:text/html,{script}",
            *(f"{data}:{trusted};text/html;charset=UTF-8,{page}" for trusted in TRUSTED),
        ]
    found += ["vbscript:msgbox(1)", "VBScript:MsgBox(1)", "vbs%09cript:msgbox(1)"]
    # Breaking out of a string in a page that echoes the value into a script.
    found += ['";alert(0);//', "';alert(0);//"]
    found += [f"//{target}" for target in JS_TARGETS]
    return found


def _authority() -> list[str]:
    # The classic bypasses get every suffix; the doubled-scheme leads, which only work
    # through lenient parsers, the suffixes that hide the host; "/////" plain ones.
    groups = (
        (("//", "///", "////", "https://", "/https://"), PATH_SUFFIXES),
        (("https:///", "/https:///", "//https://", "//https:///"), HIDING_SUFFIXES),
        (("/////",), ("", "/")),
    )
    return [
        lead + destination + suffix
        for leads, suffixes in groups
        for lead in leads
        for destination in DESTINATIONS
        for suffix in suffixes
    ]


def _separator() -> list[str]:
    leads = ("/", "//", "///", "////", "https://", "/https://")
    found = [
        lead + separator + target
        for lead in leads
        for separator in ("%09/", "%5c")
        for target in (*DESTINATIONS, *JS_TARGETS)
    ]
    found += [f"/https:/%5c{site}/" for site in SITES]
    return found


def _encoded() -> list[str]:
    found = []
    for slash in ENCODED_SLASHES:
        found += [f"/{slash}{slash}{site}" for site in SITES]
        found += [f"{slash}{slash}google.com", f"/{slash}/google.com"]
    for upper in (False, True):
        url = _percent_all("http://google.com", upper=upper)
        host = _percent_all("google.com", upper=upper)
        found += [
            url,
            f"/{url}",
            f"http://{host}",
            f"/http://{host}",
            f"/{_percent_all('/' + chr(92) + '/google.com', upper=upper)}/",
            url.replace("%", "%25"),
        ]
    return found


def _backslash() -> list[str]:
    leads = ("/\\", "\\/", "\\\\", "/\\/", "\\/\\/", "/\\/\\/")
    return [lead + site + suffix for lead in leads for site in SITES for suffix in ("", "/")]


def _whitespace() -> list[str]:
    return [
        template.format(space=space, site="google.com")
        for space in WHITESPACE
        for template in (
            "/{space}/{site}",
            "{space}//{site}",
            "//{space}{site}",
            "/{space}{space}/{site}",
            "https:{space}//{site}",
        )
    ]


def _slashless() -> list[str]:
    slashes = ("", "/", "\\", "\\\\", "/\\", "\\/", "///")
    return [
        f"{scheme}:{slash}{evil}"
        for scheme in ("http", "https", "HTTPS")
        for slash in slashes
        for evil in ("google.com", "localdomain.pw")
    ]


def _userinfo() -> list[str]:
    found = []
    for trusted, evil in PAIRS:
        for lead in ("//", "http://"):
            found += [
                *(
                    f"{lead}{junk}@{trusted}{at}{evil}/"
                    for junk in JUNK_USERINFO
                    for at in ("+@", "@")
                ),
                f"{lead}{trusted}+&@{evil}#+@{trusted}/",
                f"{lead}{evil}:80#@{trusted}/",
                f"{lead}{evil}:80?@{trusted}/",
                f"{lead}{evil}\\@{trusted}",
                f"{lead}{evil}\\t{trusted}/",
                f"{lead}{evil}\t{trusted}/",
            ]
        found += [
            f"https://:@{evil}\\@{trusted}",
            f"http://{trusted}:80%40{evil}/",
            f"//{trusted}%40{evil}",
        ]
    for site in SITES:
        found += [f"@{site}", f".{site}", f"http://.{site}", f"//.{site}"]
        found += [f"{lead};@{site}" for lead in ("//", "http://", "///\\", "////\\")]
    return found


def _confusion() -> list[str]:
    found = []
    for trusted, evil in PAIRS:
        found += [f"http://{trusted}%2e{evil}/", f"http://www.{evil}\\.{trusted}"]
        found += [f"http://{evil}{sep}.{trusted}/" for sep in ("%23", "%2f%2f", "%3F", "%5c%5c")]
    for evil in ("google.com", "localdomain.pw"):
        for end in ("?", "#", ";", "/?", "/#", "%3f", "%23", "?.example.com", "#.example.com"):
            found.append(f"//{evil}{end}")
    return found


def ipv4_spellings(address: str) -> list[str]:
    """``address`` in the numeric forms URL parsers accept beside the dotted quad."""
    octets = [int(part) for part in address.split(".")]
    a, b, c, d = octets
    number = int.from_bytes(bytes(octets), "big")
    low16, low24 = (c << 8) | d, (b << 16) | (c << 8) | d
    padded = [("0" * (i + 1)) + f"0{octet:o}" for i, octet in enumerate(octets)]
    return [
        ".".join(padded),
        f"{padded[0]}.0x{b:x}.{low16}",
        f"{padded[0]}.{low24}",
        ".".join(f"0{octet:o}" for octet in octets),
        f"0x{a:x}.0{b:o}.{low16}",
        ".".join(f"0x{octet:x}" for octet in octets),
        f"0x{a:x}.{low24}",
        f"0x{number:08x}",
        str(number),
        ".".join(str(octet + 256) for octet in octets),
        f"[::{address}]",
        f"[::ffff:{address}]",
        f"[::ffff:{(a << 8) | b:x}:{low16:x}]",
    ]


def _ip() -> list[str]:
    userinfos = ("", *(f"{who}@" for who in (*JUNK_USERINFO, *TRUSTED)))
    found = [
        f"{lead}{userinfo}{host}"
        for lead in ("http://", "http:")
        for userinfo in userinfos
        for host in ipv4_spellings(EVIL_IP)
    ]
    found += [f"//{host}" for host in ipv4_spellings(EVIL_IP)]
    return found


def _ports() -> list[str]:
    return [
        f"{lead}google.com{port}"
        for lead in ("//", "https://")
        for port in (":80", ":443/", ":", ":/", ":0080", ":65535", ".:80", ".")
    ]


def _dot_segments() -> list[str]:
    dots = ("/./", "/../", "/.", "/%2e/", "/%2e%2e/", "/..", "/a/../../", "/./.")
    return [f"{dot}{slash}google.com" for dot in dots for slash in ("\\", "/", "%5c", "%2f")]


def _lookalike() -> list[str]:
    found = []
    # Kana marks that some IDN code turns into a slash.
    for mark in ("\u3031", "\u3035", "\u309d", "\u30fc", "\uff70"):
        found += [f"{mark}{evil}" for evil in ("google.com", "localdomain.pw")]
        found.append(f"{mark}{mark}google.com")
    # Fullwidth solidus and reverse solidus, which NFKC maps to "/" and "\\".
    for slash in ("\uff0f", "\uff3c"):
        found += [
            f"{slash}{slash}google.com",
            f"/{slash}google.com",
            _percent_all(slash) * 2 + "google.com",
        ]
    # Things that become the host's dot, and a NUL that cuts the host short.
    for name, tld in (("google", "com"), ("localdomain", "pw")):
        for stop in ("%00.", "%E3%80%82", "\u3002", "\uff61", "\uff0e", "%EF%BC%8E"):
            found.append(f"//{name}{stop}{tld}")
    # A homograph of a trusted host (CYRILLIC SMALL LETTER IE), in Unicode and punycode.
    homograph = "\u0435xample.com"
    found += [f"//{homograph}", f"//{homograph.encode('idna').decode()}"]
    # Fullwidth letters, which IDNA and NFKC map to ASCII.
    fullwidth = "".join(chr(ord(c) + 0xFEE0) if c.isalpha() else c for c in "google.com")
    found += [f"//{fullwidth}", f"https://{fullwidth}"]
    return found


def _nested() -> list[str]:
    all_keys = ("url", "next", "redirect", "redir", "rurl", "redirect_uri")
    short_keys = ("url", "next", "redirect", "redirect_uri")
    found = [
        f"{path}?" + "&".join(f"{key}={value}" for key in keys)
        for path in ("/", "/redirect")
        for keys in (all_keys, short_keys)
        for value in ("//example.com", "/\\/example.com", "Https://example.com")
    ]
    for site in SITES:
        found += [f"/http://{site}", f"/{site}/%2f%2e%2e", f"/x?next=//{site}"]
    for trusted, evil in PAIRS:
        found += [f"https://{trusted}/https://{evil}/", f"//{trusted}@https:///{evil}/%2e%2e"]
    found += [
        f"/ReceiveAutoRedirect/false?desiredLocationUrl={url}"
        for url in ("http://xssposed.org", "//google.com")
    ]
    return found


def _found() -> list[str]:
    return [
        "\\j\\av\\a\\s\\cr\\i\\pt\\:\\a\\l\\ert\\(1\\)",
        "ja\\nva\\tscript\\r:alert(1)",
        "%19Jav%09asc%09ript:https%20://www.whitelisteddomain.tld/%250Aconfirm%25281%2529",
        "/x:1/:///%01javascript:alert(document.cookie)/",
        "/%2f%2f%2fbing.com%2f%3fwww.omise.co",
        "//%2fxgoogle.com",
        # A "<>" that a sanitiser may strip, leaving the target behind.
        "<>javascript:alert(1);",
        "/<>//example.com",
        "<>//google.com",
        "<>//localdomain.pw",
    ]


def families() -> dict[str, list[str]]:
    """Each family's payloads, by the names the module docstring explains."""
    return {
        "empty": _empty(),
        "scheme": _scheme(),
        "authority": _authority(),
        "separator": _separator(),
        "encoded": _encoded(),
        "backslash": _backslash(),
        "whitespace": _whitespace(),
        "slashless": _slashless(),
        "userinfo": _userinfo(),
        "confusion": _confusion(),
        "ip": _ip(),
        "ports": _ports(),
        "dot_segments": _dot_segments(),
        "lookalike": _lookalike(),
        "nested": _nested(),
        "found": _found(),
    }


def payloads() -> list[str]:
    """Every family's payloads, without duplicates, in a fixed order."""
    return list(dict.fromkeys(p for family in families().values() for p in family))


def shared_payloads() -> list[str]:
    """The shared file's payloads, or none if it is not there (it is optional)."""
    if not SHARED_FILE.is_file():
        return []
    # splitlines() drops only the final newline; inner whitespace is part of a payload.
    return SHARED_FILE.read_text(encoding="utf-8").splitlines()


def payloads_with_shared() -> list[str]:
    """:func:`payloads`, then any shared-file payload it lacks, when that file exists."""
    return list(dict.fromkeys([*payloads(), *shared_payloads()]))
