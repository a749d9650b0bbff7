"""nginx: the settings refuse what would break the edge, and the rendered policy keeps the app
working (platform contract 4) while meeting the OWASP and Mozilla baselines."""

import re

import pytest

from holistix_deploy import nginx
from holistix_deploy.settings import SettingsError, validate_data

NO_SECRETS: dict[str, str] = {}


def settings_with(valid_data, **changes):
    return validate_data({**valid_data, **changes}, NO_SECRETS, host_name="vps1")


BAD_NGINX_SETTINGS = [
    ("nginx_auth_paths", ["login"], "not a path prefix"),
    ("nginx_auth_paths", ["/log in"], "not a path prefix"),
    ("nginx_auth_paths", ["/auth/(.*)"], "not a path prefix"),
    ("nginx_auth_paths", [], "at least 1"),
    ("nginx_csp_connect_extra", ["http://otlp.example.com"], "https:// or wss:// origin"),
    ("nginx_csp_connect_extra", ["https://otlp.example.com/v1/traces"], "no path"),
    ("nginx_csp_connect_extra", ["https://a.example.com; script-src *"], "https:// or wss:// origin"),
    ("nginx_client_max_body_size_mb", 0, "greater than or equal to 1"),
    ("nginx_auth_rate_per_minute", 0, "greater than or equal to 1"),
    ("nginx_api_rate_per_second", "fast", "valid integer"),
]


@pytest.mark.parametrize(
    ("key", "value", "rule"), BAD_NGINX_SETTINGS, ids=[f"{k}={v!r}"[:60] for k, v, _ in BAD_NGINX_SETTINGS]
)
def test_bad_nginx_setting_is_refused_naming_key_and_rule(valid_data, key, value, rule):
    with pytest.raises(SettingsError) as refused:
        validate_data({**valid_data, key: value}, NO_SECRETS, host_name="vps1")
    problems = refused.value.problems
    assert len(problems) == 1 and problems[0].startswith(key) and rule in problems[0], problems


def test_the_frontend_policy_lets_the_app_reach_ganymede_organisations_and_user_containers(valid_data):
    settings = settings_with(valid_data, nginx_csp_connect_extra=["https://otlp.example.com"])
    policy = dict(
        directive.split(" ", 1)
        for directive in nginx.security_headers(settings, "frontend")["Content-Security-Policy"].split("; ")
    )
    assert policy["connect-src"] == "'self' https://*.app.example.com wss://*.app.example.com https://otlp.example.com"
    assert policy["frame-src"] == "https://*.app.example.com"
    assert policy["script-src"] == "'self'" and policy["object-src"] == "'none'"
    assert policy["frame-ancestors"] == "'self'"


def test_the_api_may_not_be_framed_at_all(valid_data):
    headers = nginx.security_headers(settings_with(valid_data), "ganymede")
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["Content-Security-Policy"].endswith("frame-ancestors 'none'")


@pytest.mark.parametrize("server", ["frontend", "ganymede"])
def test_headers_follow_owasp_without_the_obsolete_ones(valid_data, server):
    headers = nginx.security_headers(settings_with(valid_data), server)
    assert headers["Strict-Transport-Security"] == "max-age=63072000; includeSubDomains"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Cross-Origin-Opener-Policy"] == "same-origin"
    assert "X-XSS-Protection" not in headers
    assert not [name for name in headers if name.startswith("Access-Control-")]


def test_organisation_blocks_inherit_no_header_that_would_stop_the_frontend_framing_them():
    assert set(nginx.INHERITED_HEADERS) == {"Strict-Transport-Security", "X-Content-Type-Options", "Referrer-Policy"}


def test_the_docker_bridge_and_loopback_are_never_rate_limited(valid_data):
    main = nginx.render_main_config(settings_with(valid_data, docker_bridge_cidr="172.18.0.1/16"), (1, 26))
    exempt = re.search(r"geo \$holistix_rate_exempt \{(.*?)\}", main, re.S)[1]
    assert {"127.0.0.0/8 1;", "::1 1;", "172.18.0.0/16 1;"} <= {line.strip() for line in exempt.splitlines()}


def test_sign_in_paths_become_one_anchored_location(valid_data):
    settings = settings_with(valid_data, nginx_auth_paths=["/auth", "/oauth2.0", "/github"])
    regex = nginx.auth_location_regex(settings)
    assert regex == r"^/(auth|oauth2\.0|github)(/|$)"
    for path, limited in [
        ("/auth", True),
        ("/auth/callback", True),
        ("/github/callback", True),
        ("/authors", False),
        ("/api/auth", False),
    ]:
        assert bool(re.match(regex, path)) is limited, path


@pytest.mark.parametrize(
    ("version", "listen", "directive"), [((1, 22), "listen 443 ssl http2;", False), ((1, 26), "listen 443 ssl;", True)]
)
def test_http2_uses_the_syntax_of_the_installed_nginx(valid_data, version, listen, directive):
    site = nginx.render_site(settings_with(valid_data), version)
    assert listen in site and ("http2 on;" in site) is directive


def test_every_include_is_relative_so_a_copy_of_the_tree_can_be_checked(valid_data):
    settings = settings_with(valid_data)
    rendered = nginx.render_main_config(settings, (1, 26)) + nginx.render_site(settings, (1, 26))
    includes = re.findall(r"^\s*include\s+(\S+);", rendered, re.M)
    assert includes and not [path for path in includes if path.startswith("/")]
