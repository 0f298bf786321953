"""Tests for proxy.config: loading, ${ENV} substitution, conversion and validation."""

import dataclasses
from collections.abc import Mapping
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from proxy.config import (
    AccessSettings,
    ConfigError,
    CorsSettings,
    ListenSettings,
    LoggingSettings,
    MetricsSettings,
    RedisSettings,
    RedisURL,
    RefreshSettings,
    Secret,
    SessionSettings,
    Settings,
    UpstreamSettings,
    ZoomSettings,
    effective_config,
    generate_key,
    load_settings,
    settings_from_mapping,
)

SHIPPED_CONFIG = Path(__file__).resolve().parent.parent / "config.yaml"
KEY = "0vGMPKzeUvVoS1mVUr5h3aNdvJyxKDu0GjTNlP2tNnI="
CLIENT_SECRET = "s3cr3t-client-value"
NOT_A_KEY = "not a valid key; make one with: python -m proxy gen-key"
SHIPPED_ENV = {
    "ZOOM_CLIENT_ID": "the-client-id",
    "ZOOM_CLIENT_SECRET": CLIENT_SECRET,
    "PROXY_SESSION_KEY": KEY,
}


def _config(**overrides: object) -> dict[str, object]:
    """A minimal valid config; a mapping override is merged into that section."""
    data: dict[str, object] = {
        "zoom": {"client_id": "id", "client_secret": CLIENT_SECRET},
        "session": {"secret_keys": [KEY]},
    }
    for name, value in overrides.items():
        base = data.get(name)
        if isinstance(value, Mapping) and isinstance(base, Mapping):
            value = {**base, **value}
        data[name] = value
    return data


def _settings(environ: Mapping[str, str] | None = None, **overrides: object) -> Settings:
    return settings_from_mapping(_config(**overrides), environ or {})


def _problems(environ: Mapping[str, str] | None = None, **overrides: object) -> tuple[str, ...]:
    with pytest.raises(ConfigError) as info:
        _settings(environ, **overrides)
    return info.value.problems


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_match_spec() -> None:
    settings = _settings()
    assert settings.listen == ListenSettings(host="0.0.0.0", port=8080, shutdown_timeout=10.0)  # noqa: S104
    assert settings.public_url == "http://localhost:8080"
    assert settings.trust_forwarded_headers is False
    assert settings.zoom == ZoomSettings(
        client_id="id",
        client_secret=Secret(CLIENT_SECRET),
        redirect_uri=None,
        authorize_url="https://zoom.us/oauth/authorize",
        token_url="https://zoom.us/oauth/token",
        revoke_url="https://zoom.us/oauth/revoke",
        api_base_url="https://api.zoom.us/v2",
        scopes=(),
    )
    assert settings.session == SessionSettings(
        secret_keys=(Secret(KEY),),
        cookie_name="zoom_proxy",
        cookie_secure=True,
        cookie_samesite="Lax",
        max_age=7776000,
        store="cookie",
    )
    assert settings.redis == RedisSettings(
        url=None, key_prefix="zoom-proxy:", on_unavailable="fail"
    )
    assert settings.refresh == RefreshSettings(margin=60.0, rotation_grace=60.0)
    assert settings.upstream == UpstreamSettings(
        connect_timeout=5.0, timeout=60.0, max_replay_body=1048576
    )
    assert settings.cors == CorsSettings(allowed_origins=())
    assert settings.access == AccessSettings((), (), ())
    assert settings.logging == LoggingSettings(level="info", format="text")
    assert settings.metrics == MetricsSettings(enabled=True)


def test_shipped_config_loads_with_environment_set() -> None:
    settings = load_settings(SHIPPED_CONFIG, environ=SHIPPED_ENV)
    assert settings.zoom.client_id == "the-client-id"
    assert settings.zoom.client_secret == Secret(CLIENT_SECRET)
    assert settings.session.secret_keys == (Secret(KEY),)
    assert settings == _settings(zoom={"client_id": "the-client-id"}), (
        "the shipped file should hold the defaults"
    )


def test_shipped_config_names_each_unset_variable() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(SHIPPED_CONFIG, environ={})
    assert info.value.problems == (
        "zoom.client_id: environment variable ZOOM_CLIENT_ID is not set",
        "zoom.client_secret: environment variable ZOOM_CLIENT_SECRET is not set",
        "session.secret_keys[0]: environment variable PROXY_SESSION_KEY is not set",
    )


def test_config_path_comes_from_zoom_proxy_config(tmp_path: Path) -> None:
    path = _write(tmp_path, "zoom: {client_id: x}\n")
    with pytest.raises(ConfigError) as info:
        load_settings(environ={"ZOOM_PROXY_CONFIG": str(path)})
    assert "zoom.client_secret: required" in info.value.problems


def test_env_default_applies_when_unset() -> None:
    settings = _settings(zoom={"client_id": "${CLIENT:-fallback}"})
    assert settings.zoom.client_id == "fallback"


def test_env_default_applies_when_set_but_empty() -> None:
    settings = _settings({"CLIENT": ""}, zoom={"client_id": "${CLIENT:-fallback}"})
    assert settings.zoom.client_id == "fallback"


def test_env_value_wins_over_default() -> None:
    settings = _settings({"CLIENT": "real"}, zoom={"client_id": "${CLIENT:-fallback}"})
    assert settings.zoom.client_id == "real"


def test_env_references_anywhere_in_a_string() -> None:
    environ = {"HOST": "proxy.example.com", "PORT": "8443"}
    settings = _settings(environ, public_url="https://${HOST}:${PORT}")
    assert settings.public_url == "https://proxy.example.com:8443"


def test_unset_variable_without_default_is_named() -> None:
    problems = _problems(listen={"host": "${BIND_HOST}"})
    assert problems == ("listen.host: environment variable BIND_HOST is not set",)


def test_an_unclosed_reference_is_a_problem() -> None:
    environ = {"PROXY_SESSION_KEY": KEY, "HOST": "example.com"}
    problems = _problems(
        environ,
        session={"secret_keys": ["${PROXY_SESSION_KEY"]},
        public_url="https://${HOST:-localhost",
    )
    assert problems == (
        'session.secret_keys[0]: "${PROXY_SESSION_KEY" has no closing "}"',
        'public_url: "${HOST" has no closing "}"',
    )


def test_a_malformed_reference_is_a_problem() -> None:
    problems = _problems({"HOST": "h"}, listen={"host": "${HOST:h}"}, logging={"level": "${}"})
    assert problems == (
        'listen.host: "${HOST" is malformed: write ${NAME} or ${NAME:-default}',
        'logging.level: "${" is malformed: write ${NAME} or ${NAME:-default}',
    )


def test_a_malformed_reference_in_a_secret_is_not_quoted() -> None:
    problems = _problems(
        zoom={"client_secret": "s3cr${t-value"},
        redis={"url": f"redis://:{REDIS_PASSWORD}${{-x}}@redis"},
    )
    assert problems == (
        'zoom.client_secret: a "${" has no closing "}"',
        'redis.url: a "${" is malformed: write ${NAME} or ${NAME:-default}',
    )
    assert not any("t-value" in problem or REDIS_PASSWORD in problem for problem in problems)


def test_strings_convert_to_int_bool_and_float() -> None:
    environ = {"PORT": "9090", "SECURE": "false", "GRACE": "2.5"}
    settings = _settings(
        environ,
        listen={"port": "${PORT}"},
        session={"cookie_secure": "${SECURE}"},
        refresh={"rotation_grace": "${GRACE}"},
        trust_forwarded_headers="Yes",
    )
    assert settings.listen.port == 9090
    assert settings.session.cookie_secure is False
    assert settings.refresh.rotation_grace == 2.5
    assert settings.trust_forwarded_headers is True


def test_yaml_boolean_is_not_a_port() -> None:
    assert _problems(listen={"port": True}) == ("listen.port: expected an integer, got True",)


def test_wrong_type_names_key_and_value() -> None:
    assert _problems(listen={"port": "abc"}) == ("listen.port: expected an integer, got 'abc'",)


def test_port_out_of_range() -> None:
    assert _problems(listen={"port": 70000}) == (
        "listen.port: must be between 1 and 65535, got 70000",
    )


def test_every_problem_is_reported_at_once() -> None:
    problems = _problems(
        zoom={"client_id": ""},
        listen={"port": "abc"},
        logging={"level": "loud"},
        upstream={"timeout": 0},
    )
    assert problems == (
        "zoom.client_id: required",
        "listen.port: expected an integer, got 'abc'",
        "upstream.timeout: must be greater than 0, got 0.0",
        "logging.level: expected one of debug, info, warning, error, critical, got 'loud'",
    )


def test_missing_required_values_say_required() -> None:
    problems = _problems(zoom={"client_id": None, "client_secret": None}, session={})
    assert problems == (
        "zoom.client_id: required",
        "zoom.client_secret: required",
    )
    with pytest.raises(ConfigError) as info:
        settings_from_mapping({}, {})
    assert sorted(info.value.problems) == [
        "session.secret_keys: required",
        "zoom.client_id: required",
        "zoom.client_secret: required",
    ]


def test_half_a_user_app_is_a_problem() -> None:
    assert _problems(zoom={"client_secret": None}) == ("zoom.client_secret: required",)


def test_empty_secret_keys_list_is_required() -> None:
    assert _problems(session={"secret_keys": []}) == ("session.secret_keys: required",)


def test_unset_optional_secret_key_is_skipped() -> None:
    settings = _settings(session={"secret_keys": [KEY, "${OLD_KEY:-}"]})
    assert settings.session.secret_keys == (Secret(KEY),)


def test_unknown_keys_are_reported_at_every_level() -> None:
    problems = _problems(zoom={"clinet_typo": "x"}, listne={}, logging={"colour": True})
    assert problems == (
        "listne: unknown key; did you mean listen?",
        "zoom.clinet_typo: unknown key",
        "logging.colour: unknown key",
    )


def test_an_unknown_key_suggests_the_closest_known_key() -> None:
    problems = _problems(
        zoom={"client_scret": "x"},
        session={"cookie_secrue": True, "public_url": "http://x"},
        secret_keys=[KEY],
    )
    assert problems == (
        "secret_keys: unknown key; did you mean session.secret_keys?",
        "zoom.client_scret: unknown key; did you mean zoom.client_secret?",
        "session.cookie_secrue: unknown key; did you mean session.cookie_secure?",
        "session.public_url: unknown key; did you mean public_url?",
    )


def test_an_invalid_session_key_says_how_to_make_one() -> None:
    problems = _problems(session={"secret_keys": [KEY, "not-a-fernet-key"]})
    assert problems == (f"session.secret_keys[1]: {NOT_A_KEY}",)


def test_generated_key_is_accepted() -> None:
    key = generate_key()
    Fernet(key)
    assert _settings(session={"secret_keys": [key]}).session.secret_keys == (Secret(key),)


def test_secrets_never_appear_in_repr() -> None:
    text = repr(_settings()) + str(_settings().zoom.client_secret)
    assert CLIENT_SECRET not in text
    assert KEY not in text
    assert repr(Secret("x")) == "Secret('**********')"


def test_secrets_never_appear_in_error_messages() -> None:
    short_key = KEY[:-4]
    problems = _problems(
        zoom={"client_secret": [CLIENT_SECRET]},
        session={"secret_keys": [short_key, 12345]},
    )
    assert problems == (
        "zoom.client_secret: expected a string, got a list",
        f"session.secret_keys[0]: {NOT_A_KEY}",
        f"session.secret_keys[1]: {NOT_A_KEY}",
    )
    assert _problems(session={"secret_keys": KEY}) == (
        "session.secret_keys: expected a list of keys, got a string",
    )


def test_redirect_uri_defaults_to_public_url_callback() -> None:
    settings = _settings(public_url="https://Proxy.Example.com/")
    assert settings.public_url == "https://proxy.example.com"
    assert settings.redirect_uri == "https://proxy.example.com/auth/callback"


def test_explicit_redirect_uri_is_used() -> None:
    settings = _settings(zoom={"redirect_uri": "https://example.com/cb"})
    assert settings.redirect_uri == "https://example.com/cb"


def test_public_url_must_be_an_origin() -> None:
    assert _problems(public_url="ftp://example.com/app?x=1") == (
        "public_url: expected http(s)://host[:port] with no path, got 'ftp://example.com/app?x=1'",
    )


def test_urls_must_be_absolute_http() -> None:
    problems = _problems(zoom={"token_url": "/oauth/token", "redirect_uri": "https://x/cb#frag"})
    assert problems == (
        "zoom.redirect_uri: must not contain a fragment (#...), got 'https://x/cb#frag'",
        "zoom.token_url: expected an absolute http(s) URL, got '/oauth/token'",
    )


def test_api_base_url_may_not_carry_a_user_or_password() -> None:
    assert _problems(zoom={"api_base_url": "https://u:secret@api.zoom.us/v2"}) == (
        "zoom.api_base_url: must not contain a user or password (user:password@host)",
    )


def test_api_base_url_trailing_slash_is_stripped() -> None:
    settings = _settings(zoom={"api_base_url": "http://127.0.0.1:9000/v2/"})
    assert settings.zoom.api_base_url == "http://127.0.0.1:9000/v2"


def test_scopes_accept_a_space_separated_string() -> None:
    settings = _settings(zoom={"scopes": "user:read  meeting:write"})
    assert settings.zoom.scopes == ("user:read", "meeting:write")


def test_origins_are_normalised() -> None:
    origins = ["HTTPS://App.Example.com:443", "http://localhost:80", "http://[::1]:3000"]
    settings = _settings(cors={"allowed_origins": origins})
    assert settings.cors.allowed_origins == (
        "https://app.example.com",
        "http://localhost",
        "http://[::1]:3000",
    )


def test_bad_origins_are_each_reported() -> None:
    problems = _problems(cors={"allowed_origins": ["*", "https://a.example/path", 7]})
    assert problems == (
        "cors.allowed_origins[0]: expected an origin http(s)://host[:port], got '*'",
        "cors.allowed_origins[1]: expected an origin http(s)://host[:port], got "
        "'https://a.example/path'",
        "cors.allowed_origins[2]: expected a string, got 7",
    )


def test_access_emails_and_domains_are_lower_cased() -> None:
    access = {"allowed_emails": ["Ann@Example.COM"], "allowed_email_domains": ["Example.ORG"]}
    settings = _settings(access=access)
    assert settings.access.allowed_emails == ("ann@example.com",)
    assert settings.access.allowed_email_domains == ("example.org",)


def test_bad_emails_and_domains() -> None:
    access = {"allowed_emails": ["a@b@c", "plain"], "allowed_email_domains": ["@example.org"]}
    assert _problems(access=access) == (
        "access.allowed_emails[0]: expected an email address with exactly one '@', got 'a@b@c'",
        "access.allowed_emails[1]: expected an email address with exactly one '@', got 'plain'",
        "access.allowed_email_domains[0]: expected a domain without '@', got '@example.org'",
    )


def test_samesite_is_normalised() -> None:
    assert _settings(session={"cookie_samesite": "strict"}).session.cookie_samesite == "Strict"


def test_bad_samesite() -> None:
    assert _problems(session={"cookie_samesite": "Loose"}) == (
        "session.cookie_samesite: expected one of Lax, Strict, None, got 'Loose'",
    )


def test_https_public_url_requires_a_secure_cookie() -> None:
    problems = _problems(public_url="https://proxy.example.com", session={"cookie_secure": "no"})
    assert problems == (
        "session.cookie_secure: must be true when public_url is https:// (with false, browsers "
        "also send the session cookie over plain http, where anyone on the network can read "
        "it): set it to true or remove it",
    )
    plain = _settings(public_url="http://127.0.0.1:8080", session={"cookie_secure": False})
    assert plain.session.cookie_secure is False


def test_checks_between_keys_run_despite_other_problems() -> None:
    problems = _problems(
        public_url="https://proxy.example.com",
        session={"cookie_secure": False, "store": "redis"},
        listen={"port": 0},
    )
    assert problems == (
        "listen.port: must be between 1 and 65535, got 0",
        "session.cookie_secure: must be true when public_url is https:// (with false, browsers "
        "also send the session cookie over plain http, where anyone on the network can read "
        "it): set it to true or remove it",
        "redis.url: required when session.store is redis",
    )


def test_samesite_none_requires_secure_cookie() -> None:
    problems = _problems(session={"cookie_samesite": "none", "cookie_secure": False})
    assert problems == (
        "session.cookie_samesite: None requires cookie_secure: true (browsers reject it otherwise)",
    )


def test_bad_cookie_name() -> None:
    assert _problems(session={"cookie_name": "my cookie"}) == (
        "session.cookie_name: expected letters, digits, '-', '_' or '.', got 'my cookie'",
    )


def test_section_must_be_a_mapping() -> None:
    assert _problems(listen=8080) == ("listen: expected a mapping, got int",)


def test_yaml_syntax_error_is_one_config_error(tmp_path: Path) -> None:
    path = _write(tmp_path, "listen:\n  port: [8080\n")
    with pytest.raises(ConfigError) as info:
        load_settings(path, environ={})
    (problem,) = info.value.problems
    assert problem.startswith(f"{path}:")
    assert "invalid YAML" in problem


def test_a_key_given_twice_is_a_problem_at_any_depth(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        f"""\
zoom:
  client_id: first
  client_secret: {CLIENT_SECRET}
  client_id: second
session: {{secret_keys: [{KEY}], cookie_secure: true, cookie_secure: true}}
logging: {{level: info}}
logging: {{level: info, level: debug, level: info}}
""",
    )
    with pytest.raises(ConfigError) as info:
        load_settings(path, environ={})
    assert info.value.problems == (
        "zoom.client_id: given twice (lines 2 and 4)",
        "session.cookie_secure: given twice (line 5)",
        "logging: given twice (lines 6 and 7)",
        "logging.level: given 3 times (line 7)",
    )


def test_a_key_given_twice_is_reported_with_every_other_problem(tmp_path: Path) -> None:
    path = _write(tmp_path, "zoom: {client_id: a}\nzoom: {client_id: b}\nlisten: {port: x}\n")
    with pytest.raises(ConfigError) as info:
        load_settings(path, environ={})
    assert info.value.problems == (
        "zoom: given twice (lines 1 and 2)",
        "zoom.client_secret: required",
        "session.secret_keys: required",
        "listen.port: expected an integer, got 'x'",
    )


def test_a_secret_given_twice_is_reported_without_its_values(tmp_path: Path) -> None:
    text = f"zoom: {{client_id: a, client_secret: {CLIENT_SECRET}, client_secret: other-one}}\n"
    with pytest.raises(ConfigError) as info:
        load_settings(_write(tmp_path, text), environ={})
    assert info.value.problems[0] == "zoom.client_secret: given twice (line 1)"
    assert CLIENT_SECRET not in str(info.value)
    assert "other-one" not in str(info.value)


def test_a_key_may_override_a_yaml_merge(tmp_path: Path) -> None:
    text = f"""\
base: &zoom {{client_id: a, client_secret: {CLIENT_SECRET}}}
zoom: {{<<: *zoom, client_id: b}}
session: {{secret_keys: [{KEY}]}}
"""
    with pytest.raises(ConfigError) as info:
        load_settings(_write(tmp_path, text), environ={})
    assert info.value.problems == ("base: unknown key",)


def test_missing_file_is_one_config_error(tmp_path: Path) -> None:
    path = tmp_path / "absent.yaml"
    with pytest.raises(ConfigError) as info:
        load_settings(path, environ={})
    assert info.value.problems == (f"{path}: config file not found",)


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    path = _write(tmp_path, "- a\n- b\n")
    with pytest.raises(ConfigError) as info:
        load_settings(path, environ={})
    assert info.value.problems == (
        f"{path}: the top level must be a mapping of settings, got a list",
    )


def test_error_str_joins_problems_with_newlines() -> None:
    assert str(ConfigError("a: x", "b: y")) == "a: x\nb: y"


def test_settings_are_frozen() -> None:
    settings = _settings()
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.public_url = "http://elsewhere"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.listen.port = 1  # type: ignore[misc]


def test_malformed_urls_are_problems_not_crashes() -> None:
    problems = _problems(public_url="http://[::1:80", zoom={"token_url": "https://h:99999/t"})
    assert problems == (
        "zoom.token_url: expected an absolute http(s) URL, got 'https://h:99999/t'",
        "public_url: expected http(s)://host[:port] with no path, got 'http://[::1:80'",
    )


# --- redis ---------------------------------------------------------------------------

REDIS_PASSWORD = "redis-pa55word"


@pytest.mark.parametrize(
    "url",
    [
        "redis://127.0.0.1:6379/0",
        f"redis://:{REDIS_PASSWORD}@redis:6379/2",
        f"rediss://default:{REDIS_PASSWORD}@redis.example.com:6380",
        "redis://redis",
        "unix:///run/redis/redis.sock?db=1",
    ],
)
def test_redis_urls_are_accepted(url: str) -> None:
    assert _settings(redis={"url": url}).redis.url == RedisURL(url)


def test_store_and_on_unavailable_are_normalised() -> None:
    settings = _settings(
        session={"store": "Redis"}, redis={"url": "redis://r", "on_unavailable": "FAIL"}
    )
    assert (settings.session.store, settings.redis.on_unavailable) == ("redis", "fail")


def test_an_empty_redis_url_means_no_redis() -> None:
    settings = _settings({"REDIS_URL": ""}, redis={"url": "${REDIS_URL:-}"})
    assert settings.redis.url is None


def test_the_shipped_config_takes_redis_from_the_environment() -> None:
    url = f"redis://:{REDIS_PASSWORD}@redis:6379/0"
    settings = load_settings(SHIPPED_CONFIG, environ={**SHIPPED_ENV, "REDIS_URL": url})
    assert settings.redis.url == RedisURL(url)
    assert settings.session.store == "cookie"


def test_store_redis_requires_a_redis_url() -> None:
    assert _problems(session={"store": "redis"}) == (
        "redis.url: required when session.store is redis",
    )


def test_on_unavailable_local_is_refused_with_store_redis() -> None:
    problems = _problems(
        session={"store": "redis"}, redis={"url": "redis://r", "on_unavailable": "local"}
    )
    assert len(problems) == 1
    assert problems[0].startswith("redis.on_unavailable: local needs session.store: cookie")


def test_on_unavailable_local_is_accepted_with_cookies() -> None:
    settings = _settings(redis={"url": "redis://r", "on_unavailable": "local"})
    assert settings.redis.on_unavailable == "local"


@pytest.mark.parametrize(
    ("redis", "problem"),
    [
        ({"url": f"http://:{REDIS_PASSWORD}@redis:6379"}, "redis.url: expected redis://"),
        ({"url": f"redis://:{REDIS_PASSWORD}@:6379"}, "redis.url: expected redis://"),
        ({"url": f"redis://:{REDIS_PASSWORD}@redis:99999"}, "redis.url: expected redis://"),
        ({"url": f"redis://:{REDIS_PASSWORD}@redis/zero"}, "redis.url: expected redis://"),
        ({"url": "unix://"}, "redis.url: a unix:// URL needs the socket's path"),
        ({"url": ["redis://r"]}, "redis.url: expected a string, got a list"),
        ({"on_unavailable": "retry"}, "redis.on_unavailable: expected one of fail, local"),
        ({"port": 6379}, "redis.port: unknown key"),
    ],
)
def test_bad_redis_settings_never_show_the_password(redis: dict[str, object], problem: str) -> None:
    (found,) = _problems(redis=redis)
    assert found.startswith(problem)
    assert REDIS_PASSWORD not in found


def test_a_bad_store_is_a_problem() -> None:
    assert _problems(session={"store": "memcached"}) == (
        "session.store: expected one of cookie, redis, got 'memcached'",
    )


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        (f"redis://:{REDIS_PASSWORD}@redis:6379/0", "redis://:**********@redis:6379/0"),
        (f"rediss://app:{REDIS_PASSWORD}@redis/1", "rediss://app:**********@redis/1"),
        (f"redis://{REDIS_PASSWORD}@redis", "redis://**********@redis"),
        (
            f"unix:///run/redis.sock?db=1&password={REDIS_PASSWORD}",
            "unix:///run/redis.sock?db=1&password=**********",
        ),
        ("redis://redis:6379/0", "redis://redis:6379/0"),
    ],
)
def test_the_redis_password_is_masked(url: str, masked: str) -> None:
    settings = _settings(redis={"url": url})
    assert settings.redis.url is not None
    assert settings.redis.url.masked == masked
    shown = repr(settings) + str(settings.redis.url) + repr(effective_config(settings))
    assert REDIS_PASSWORD not in shown
    assert effective_config(settings)["redis"] == {
        "url": masked,
        "key_prefix": "zoom-proxy:",
        "on_unavailable": "fail",
    }


# --- service callers (SPEC 12) -------------------------------------------------------

DIGEST = "a" * 64


def _service(*callers: object, **changes: object) -> dict[str, object]:
    return {
        "account_id": "acct",
        "client_id": "s2s-id",
        "client_secret": "s2s-secret-value",
        "callers": list(callers) or [{"name": "worker", "key_sha256": DIGEST, "allow": ["* /**"]}],
        **changes,
    }


def test_a_service_only_config_loads_without_the_user_app() -> None:
    settings = _settings(zoom={"client_id": None, "client_secret": None}, service=_service())
    assert not settings.users_sign_in
    assert settings.service.enabled
    [caller] = settings.service.callers
    assert (caller.name, caller.key_sha256, caller.downloads, caller.rate_per_second) == (
        "worker",
        DIGEST,
        False,
        None,
    )


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        (
            {"name": "w", "key_sha256": "ABC", "allow": ["GET /x"]},
            "service.callers[0].key_sha256: must be 64 lower-case hex digits",
        ),
        ({"name": "w", "key_sha256": DIGEST, "allow": []}, "service.callers[0].allow: must list"),
        (
            {"name": "w", "key_sha256": DIGEST, "allow": ["GET /x", "FETCH"]},
            "service.callers[0].allow[1]: ",
        ),
        (
            {"name": "w", "key_sha256": DIGEST, "allow": ["GET /**/meetings"]},
            "service.callers[0].allow[0]: ",
        ),
        (
            {"name": "Bad Name", "key_sha256": DIGEST, "allow": ["GET /x"]},
            "service.callers[0].name",
        ),
        (
            {"name": "w", "key_sha256": DIGEST, "allow": ["GET /x"], "rate_per_second": 0},
            "service.callers[0].rate_per_second: ",
        ),
        (
            {"name": "w", "key_sha256": DIGEST, "allow": ["GET /x"], "colour": "red"},
            "service.callers[0].colour: unknown key",
        ),
    ],
    ids=["digest", "empty-allow", "unparsable", "double-star-not-last", "name", "rate", "unknown"],
)
def test_each_bad_caller_entry_is_reported_by_its_key_path(
    entry: dict[str, object], problem: str
) -> None:
    problems = _problems(service=_service(entry))
    assert any(p.startswith(problem) for p in problems), problems


def test_a_duplicate_caller_name_is_a_problem() -> None:
    entry = {"name": "w", "key_sha256": DIGEST, "allow": ["GET /x"]}
    other = {**entry, "key_sha256": "b" * 64}
    assert _problems(service=_service(entry, other)) == (
        "service.callers[1].name: 'w' is already caller 0",
    )


def test_service_account_needs_its_credentials_and_a_caller() -> None:
    problems = _problems(service={"account_id": "acct"})
    assert problems == (
        "service.client_id: required when service.account_id is set",
        "service.client_secret: required when service.account_id is set",
        "service.callers: list at least one caller when service.account_id is set",
    )


def test_the_service_secret_is_masked_and_never_in_a_problem() -> None:
    settings = _settings(service=_service())
    assert effective_config(settings)["service"]["client_secret"] == "**********"  # type: ignore[index]
    problems = _problems(service=_service(account_id=None))
    assert not any("s2s-secret-value" in p for p in problems)


def test_download_origins_default_to_zooms_web_hosts_and_reject_junk() -> None:
    assert [str(o) for o in _settings().zoom.download_origins] == [
        "https://zoom.us",
        "https://*.zoom.us",
    ]
    [problem] = _problems(zoom={"download_origins": ["https://zoom.us", "zoom.us/rec"]})
    assert problem.startswith("zoom.download_origins[1]: ")
