"""Bad inventory input is refused before any change, naming the key, the value and the rule."""

import ipaddress

import pytest
from pydantic import ValidationError

from holistix_deploy.settings import Settings, validate_data

from .helpers import problems_for

NO_SECRETS: dict[str, str] = {}


def test_valid_data_gives_frozen_settings_with_defaults(valid_data):
    settings = validate_data(valid_data, NO_SECRETS, host_name="vps1")
    assert settings.domain == "app.example.com"
    assert settings.public_ipv4 == ipaddress.IPv4Address("203.0.113.10")
    assert settings.environment == "prod"
    assert settings.deploy_user == "deploy"
    assert settings.database_name == "ganymede_prod"
    assert settings.secrets_dir == "/etc/holistix/prod"
    with pytest.raises(ValidationError):
        settings.domain = "other.example.com"  # frozen: nothing downstream can change it


def test_hyphenated_environment_gives_an_sql_safe_database_name(valid_data):
    settings = validate_data({**valid_data, "environment": "eu-staging"}, NO_SECRETS)
    assert settings.database_name == "ganymede_eu_staging"


def test_rsa_key_of_3072_bits_is_accepted(valid_data, rsa_3072_key_line):
    settings = validate_data({**valid_data, "deploy_authorized_keys": [rsa_3072_key_line]}, NO_SECRETS)
    assert settings.deploy_authorized_keys == [rsa_3072_key_line]


# (key, bad value, words of the rule that the message must contain)
BAD_VALUES = [
    ("domain", "App.Example.com", "lower case"),
    ("domain", "localhost", "at least two labels"),
    ("domain", "app.example.com.", "must not end with a dot"),
    ("domain", "-bad.example.com", "is not a DNS label"),
    ("domain", "203.0.113.10", "not an IP address"),
    ("domain", ("a" * 60 + ".") * 3 + "com", "at most 180"),
    ("environment", "Prod", "lower case letter"),
    ("environment", "a-very-long-environment-name", "at most 20"),
    ("admin_email", "ops-at-example.com", "e-mail address"),
    ("admin_email", "ops@localhost", "e-mail address"),
    ("public_ipv4", "203.0.113", "valid IPv4"),
    ("public_ipv4", "127.0.0.1", "not loopback"),
    ("public_ipv4", "2001:db8::1", "valid IPv4"),
    ("public_ipv6", "203.0.113.10", "valid IPv6"),
    ("public_ipv6", "fe80::1", "link-local"),
    ("deploy_user", "root", "system or platform account"),
    ("deploy_user", "Deploy User", "POSIX user name"),
    ("deploy_authorized_keys", [], "at least 1"),
    ("deploy_authorized_keys", ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIIUXAcIz21dZ"], "not valid base64"),
    ("deploy_authorized_keys", ["ssh-dss AAAAB3NzaC1kc3MAAACBAP"], "not accepted"),
    ("deploy_authorized_keys", ["just-a-word"], "OpenSSH public key line"),
    ("base_extra_packages", ["nginx=1.24"], "not a package name"),
    ("gateway_pool_size", 0, "greater than or equal to 1"),
    ("gateway_pool_size", 101, "less than or equal to 100"),
    ("gateway_pool_size", "four", "valid integer"),
    ("ganymede_port", 80, "greater than or equal to 1024"),
    ("ganymede_port", 70000, "less than or equal to 65535"),
    ("apt_cache_valid_seconds", -1, "greater than or equal to 0"),
]


@pytest.mark.parametrize(("key", "value", "rule"), BAD_VALUES, ids=[f"{k}={v!r}"[:60] for k, v, _ in BAD_VALUES])
def test_bad_value_is_refused_naming_key_value_and_rule(valid_data, key, value, rule):
    problems = problems_for({**valid_data, key: value})
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"{key}"), problems
    if not isinstance(value, list) or value:
        assert repr(value)[:40].strip("'[]") in problems[0], problems
    assert rule in problems[0], problems


def test_rsa_key_under_3072_bits_is_refused(valid_data, rsa_2048_key_line):
    (problem,) = problems_for({**valid_data, "deploy_authorized_keys": [rsa_2048_key_line]})
    assert problem.startswith("deploy_authorized_keys[0]") or problem.startswith("deploy_authorized_keys")
    assert "2048 bits; at least 3072" in problem


def test_a_key_listed_twice_is_refused(valid_data, ed25519_key_line):
    (problem,) = problems_for({**valid_data, "deploy_authorized_keys": [ed25519_key_line, ed25519_key_line]})
    assert "same key twice" in problem


@pytest.mark.parametrize("key", ["domain", "admin_email", "public_ipv4", "deploy_authorized_keys"])
def test_missing_required_setting_is_named(valid_data, key):
    data = dict(valid_data)
    del data[key]
    (problem,) = problems_for(data)
    assert problem.startswith(f"{key}: required setting is missing")


def test_typo_in_a_key_suggests_the_real_one(valid_data):
    (problem,) = problems_for({**valid_data, "gateway_pool_sise": 3})
    assert problem.startswith("gateway_pool_sise = 3: unknown setting")
    assert "did you mean 'gateway_pool_size'?" in problem


def test_unknown_key_without_a_close_match_is_still_refused(valid_data):
    (problem,) = problems_for({**valid_data, "frobnicate": True})
    assert "frobnicate = True: unknown setting" in problem
    assert "did you mean" not in problem


def test_gateway_port_range_clashing_with_ganymede_is_refused(valid_data):
    (problem,) = problems_for({**valid_data, "ganymede_port": 7102, "gateway_pool_size": 4})
    assert problem == (
        "gateway_http_port_base+2 = 7102 clashes with ganymede_port (TCP port 7102); every TCP port must differ"
    )


def test_build_server_port_on_postgres_port_is_refused(valid_data):
    (problem,) = problems_for({**valid_data, "gateway_build_server_port": 5432})
    assert "gateway_build_server_port = 5432 clashes with postgresql" in problem


def test_gateway_range_past_the_last_port_is_refused(valid_data):
    (problem,) = problems_for({**valid_data, "gateway_vpn_port_base": 65500, "gateway_pool_size": 50})
    assert "runs past 65535" in problem


def test_a_secret_in_inventory_data_is_refused_and_points_at_its_variable(valid_data):
    (problem,) = problems_for({**valid_data, "smtp_password": "hunter2-but-longer"})
    assert "export HOLISTIX_SMTP_PASSWORD" in problem
    assert "hunter2" not in problem


def test_an_unknown_secret_looking_key_never_shows_its_value(valid_data):
    (problem,) = problems_for({**valid_data, "smtp_pasword": "hunter2-but-longer"})
    assert "hunter2" not in problem
    assert "did you mean" not in problem or "smtp" not in problem.split("did you mean")[1]


@pytest.mark.parametrize(
    "value",
    [
        "xxxxx",
        "xxxxxxxxxx",
        "changeme",
        "CHANGEME",
        "<your token>",
        "${SMTP_PASSWORD}",
        "short",
        "test-encryption-key-not-for-production-use",
        "aaaaaaaaaaaa",
        " padded-secret-value ",
    ],
)
def test_placeholder_operator_secret_is_refused_without_echoing_it(valid_data, value):
    (problem,) = problems_for(valid_data, {"HOLISTIX_SMTP_PASSWORD": value})
    assert problem.startswith(f"HOLISTIX_SMTP_PASSWORD = <hidden, {len(value)} characters>: ")
    assert value.strip() not in problem.split(": ", 1)[1]


def test_real_operator_secret_is_accepted(valid_data):
    settings = validate_data(valid_data, {"HOLISTIX_DNS_API_TOKEN": "q8Zr-0d1F5kPz7W2bLx9"})
    assert isinstance(settings, Settings)


def test_every_problem_is_reported_at_once(valid_data):
    data = {**valid_data, "domain": "BAD", "gateway_pool_size": 0, "gateway_pool_sise": 1}
    problems = problems_for(data, {"HOLISTIX_SMTP_PASSWORD": "xxxxx"})
    assert len(problems) == 4
    assert [p.split(" ")[0] for p in problems] == [
        "gateway_pool_sise",
        "domain",
        "gateway_pool_size",
        "HOLISTIX_SMTP_PASSWORD",
    ]


def test_every_setting_has_a_description_and_a_module():
    for key, field in Settings.model_fields.items():
        assert field.description and len(field.description) > 20, key
        assert field.json_schema_extra["module"], key


# -- base hardening and firewall settings -------------------------------------------------------

MORE_BAD_VALUES = [
    ("ssh_extra_options", {"PasswordAuthentication": "yes"}, "set by base's SSH hardening"),
    ("ssh_extra_options", {"Match": "User alice"}, "set by base's SSH hardening"),
    ("ssh_extra_options", {"AllowGroups": "sudo\nPermitRootLogin yes"}, "one non-empty line"),
    ("ssh_extra_options", {"Allow Groups": "sudo"}, "not an sshd_config keyword"),
    ("unattended_upgrades_reboot_time", "4am", "24-hour time"),
    ("journald_max_use", "1 GB", "size with a unit"),
    ("time_servers", ["ntp example org"], "neither an IP address nor a DNS name"),
    ("sysctl_overrides", {"kernel sysrq": "1"}, "not a kernel parameter name"),
    ("fail2ban_sshd_maxretry", 1, "greater than or equal to 2"),
    ("fail2ban_ignore_networks", ["198.51.100.300/32"], "valid IPv4 network"),
    ("docker_bridge_cidr", "172.17.0.1", None),
]


@pytest.mark.parametrize(("key", "value", "rule"), MORE_BAD_VALUES, ids=[f"{k}" for k, _, _ in MORE_BAD_VALUES])
def test_bad_hardening_setting_is_refused(valid_data, key, value, rule):
    if rule is None:  # a bridge address without a prefix is still an interface: accepted as /32
        validate_data({**valid_data, key: value}, NO_SECRETS)
        return
    (problem,) = problems_for({**valid_data, key: value})
    assert problem.startswith(key) and rule in problem, problem


BAD_FIREWALL_RULES = [
    ({"ports": "70000", "protocol": "tcp", "comment": "x"}, "[0][ports] = '70000'", "port 1-65535"),
    ({"ports": "9000:8000", "protocol": "udp", "comment": "x"}, "[0][ports] = '9000:8000'", "range like"),
    ({"ports": "8443", "protocol": "icmp", "comment": "x"}, "[0][protocol] = 'icmp'", "'tcp' or 'udp'"),
    ({"ports": "8443", "protocol": "tcp", "comment": "it's open"}, "[0][comment]", "passed to ufw"),
    ({"ports": "8443", "protocol": "tcp", "source": "example.com", "comment": "x"}, "[0][source", None),
    ({"ports": "8443", "protocol": "tcp"}, "[0][comment]", "Field required"),
    ({"ports": "8443", "protocol": "tcp", "comment": "x", "to": "any"}, "[0][to]", "Extra inputs"),
]


@pytest.mark.parametrize(("rule", "where", "words"), BAD_FIREWALL_RULES, ids=[w for _, w, _ in BAD_FIREWALL_RULES])
def test_bad_firewall_rule_is_refused_naming_the_field(valid_data, rule, where, words):
    problems = problems_for({**valid_data, "firewall_extra_rules": [rule]})
    assert any(p.startswith(f"firewall_extra_rules{where}") for p in problems), problems
    if words:
        assert any(words in p for p in problems), problems


@pytest.mark.parametrize("environment", ["1prod", "prod_eu", "Prod", "prod eu", "pröd", ""])
def test_environment_that_is_not_an_identifier_is_refused(valid_data, environment):
    (problem,) = problems_for({**valid_data, "environment": environment})
    assert problem.startswith(f"environment = {environment!r}")


def test_postgres_security_keys_cannot_be_overridden(valid_data):
    (problem,) = problems_for({**valid_data, "postgres_overrides": {"listen_addresses": "*"}})
    assert "listen_addresses is set by the postgres module for security" in problem


def test_app_connection_limit_must_leave_room_for_administration(valid_data):
    (problem,) = problems_for({**valid_data, "postgres_max_connections": 50, "postgres_app_connection_limit": 45})
    assert problem.startswith("postgres_app_connection_limit = 45: must stay at least 10 under")


def test_database_dir_must_exist_on_the_control_machine(valid_data, tmp_path):
    (problem,) = problems_for({**valid_data, "postgres_database_dir": str(tmp_path / "missing")})
    assert "is not a directory on the machine that runs pyinfra" in problem


@pytest.mark.parametrize(("key", "value"), [("environment", "prod\n"), ("deploy_user", "deploy\n")])
def test_a_trailing_line_break_is_refused(valid_data, key, value):
    (problem,) = problems_for({**valid_data, key: value})
    assert problem.startswith(key)


@pytest.mark.parametrize("key", ["ssl_passphrase_command", "include_dir", "ssl_ca_file", "config_file"])
def test_postgres_overrides_cannot_reach_tls_or_include_other_files(valid_data, key):
    (problem,) = problems_for({**valid_data, "postgres_overrides": {key: "x"}})
    assert f"{key} is set by the postgres module for security" in problem


def test_a_run_as_the_deploy_user_may_not_drop_its_own_key(valid_data, tmp_path, ed25519_key_line):
    from holistix_deploy.settings import _own_key_problem

    key = tmp_path / "id_ed25519"
    key.write_text("private")
    (tmp_path / "id_ed25519.pub").write_text(
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOtherKeyOtherKeyOtherKeyOtherKeyOtherKey x\n"
    )
    settings = validate_data(valid_data, NO_SECRETS)
    problem = _own_key_problem({"ssh_user": "deploy", "ssh_key": str(key)}, settings)
    assert problem and "does not list the key this run logs in with" in problem
    (tmp_path / "id_ed25519.pub").write_text(ed25519_key_line + "\n")
    assert _own_key_problem({"ssh_user": "deploy", "ssh_key": str(key)}, settings) is None
    assert _own_key_problem({"ssh_user": "root", "ssh_key": str(key)}, settings) is None
