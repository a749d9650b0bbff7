"""letsencrypt: settings that would waste the CA's rate limits are refused, and the on-host
command keeps every name in one certificate, refusing past the CA's limit."""

import uuid
from pathlib import Path

import pytest

from holistix_deploy.settings import ACME_DIRECTORIES, ACME_MAX_NAMES, validate_data

from .helpers import host_script, problems_for

ROOT = Path(__file__).resolve().parents[2]
NO_SECRETS: dict[str, str] = {}


@pytest.fixture(scope="module")
def certificate_command():
    """files/letsencrypt/holistix_certificate.py, the command installed on the host."""
    return host_script("letsencrypt/holistix_certificate.py")


@pytest.fixture
def host_config(tmp_path) -> dict:
    return {
        "domain": "app.example.com",
        "organisations": [],
        "organisations_file": str(tmp_path / "organisations"),
        "max_names": ACME_MAX_NAMES,
        "provider": "coredns",
    }


BAD_ACME_SETTINGS = [
    ("acme_directory", "http://acme.example.com/dir", "an https:// URL"),
    ("acme_directory", "letsencrypt-prod", "'letsencrypt', 'letsencrypt-staging'"),
    ("acme_directory_ca_file", "/nonexistent/ca.pem", "not a PEM certificate file"),
    ("acme_dns_provider", "route53", "'coredns' or 'cloudflare'"),
    ("acme_cloudflare_api_url", "api.cloudflare.com", "http(s) URL"),
    ("acme_cloudflare_propagation_seconds", 0, "greater than or equal to 1"),
    ("acme_organisations", ["not-a-uuid"], "valid UUID"),
    ("acme_organisations", ["6c3f4b52-3a7e-4d8e-9a0b-2f4d5e6a7b8c"] * 2, "same organisation twice"),
    ("acme_organisations", [str(uuid.uuid4()) for _ in range(ACME_MAX_NAMES - 1)], "at most 98"),
]


@pytest.mark.parametrize(("key", "value", "rule"), BAD_ACME_SETTINGS, ids=[f"{k}" for k, _, _ in BAD_ACME_SETTINGS])
def test_bad_acme_setting_is_refused_naming_key_and_rule(valid_data, key, value, rule):
    problems = problems_for({**valid_data, key: value})
    assert len(problems) == 1 and problems[0].startswith(key) and rule in problems[0], problems


def test_named_directories_resolve_to_lets_encrypt(valid_data):
    settings = validate_data({**valid_data, "acme_directory": "letsencrypt-staging"}, NO_SECRETS)
    assert settings.acme_directory_url == ACME_DIRECTORIES["letsencrypt-staging"]
    assert validate_data(valid_data, NO_SECRETS).acme_directory_url == "https://acme-v02.api.letsencrypt.org/directory"


def test_every_organisation_adds_a_wildcard_for_its_user_containers(certificate_command, host_config):
    inventory_organisation, host_organisation = str(uuid.uuid4()), str(uuid.uuid4())
    host_config["organisations"] = [inventory_organisation]
    Path(host_config["organisations_file"]).write_text(f"{host_organisation}\n")
    names = certificate_command.wanted_names(host_config)
    assert names[:2] == ["app.example.com", "*.app.example.com"]
    assert set(names[2:]) == {f"*.org-{o}.app.example.com" for o in (inventory_organisation, host_organisation)}


def test_adding_an_organisation_past_the_name_limit_is_refused(certificate_command, host_config):
    full = [str(uuid.uuid4()) for _ in range(ACME_MAX_NAMES - 2)]
    Path(host_config["organisations_file"]).write_text("".join(f"{o}\n" for o in full))
    with pytest.raises(certificate_command.Refused, match="at most 100 in one certificate"):
        certificate_command._change_organisation(host_config, str(uuid.uuid4()), add=True)
    assert Path(host_config["organisations_file"]).read_text().count("\n") == ACME_MAX_NAMES - 2


def test_an_inventory_organisation_cannot_be_removed_on_the_host(certificate_command, host_config):
    listed = str(uuid.uuid4())
    host_config["organisations"] = [listed]
    with pytest.raises(certificate_command.Refused, match="acme_organisations"):
        certificate_command._change_organisation(host_config, listed, add=False)


def test_something_that_is_not_an_organisation_id_is_refused(certificate_command, host_config):
    with pytest.raises(certificate_command.Refused, match="not an organisation id"):
        certificate_command._change_organisation(host_config, "../../etc/passwd", add=True)


def test_certbot_is_forced_to_replace_the_certificate_once_the_command_decided_so(certificate_command, host_config):
    host_config.update(
        email="ops@example.com", server="https://acme.example/dir", deploy_hook="/hook /tls", challenge_hook="/dns"
    )
    command = certificate_command._certbot_command(host_config, ["app.example.com", "*.app.example.com"])
    assert "--force-renewal" in command and "--non-interactive" in command
    assert command[command.index("--manual-auth-hook") + 1] == "/dns auth"
    assert command[-4:] == ["-d", "app.example.com", "-d", "*.app.example.com"]
