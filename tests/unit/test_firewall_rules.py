"""The firewall's rules are written exactly as `ufw show added` prints them, so the ufw_firewall
operation compares equal strings (a mismatch would re-add a rule on every run)."""

from holistix_deploy.firewall import ufw_rules
from holistix_deploy.settings import validate_data


def settings_with(valid_data, **overrides):
    return validate_data({**valid_data, **overrides}, environ={})


def test_ssh_is_rate_limited_and_web_is_open_first(valid_data):
    assert ufw_rules(settings_with(valid_data))[:3] == [
        "ufw limit 22/tcp comment 'ssh, rate limited'",
        "ufw allow 80/tcp comment 'http, redirects to https'",
        "ufw allow 443/tcp comment 'https'",
    ]


def test_public_dns_opens_53_on_both_protocols_only_when_asked(valid_data):
    closed = ufw_rules(settings_with(valid_data))
    opened = ufw_rules(settings_with(valid_data, dns_served_publicly=True))
    assert not any(rule.startswith("ufw allow 53/") for rule in closed)
    assert "ufw allow 53/tcp comment 'dns, authoritative for the domain'" in opened
    assert "ufw allow 53/udp comment 'dns, authoritative for the domain'" in opened


def test_docker_bridge_reaches_dns_build_server_https_and_otlp(valid_data):
    rules = ufw_rules(settings_with(valid_data, docker_bridge_cidr="172.18.0.1/16", gateway_build_server_port=8091))
    bridge_rules = [r for r in rules if " on docker0 " in r]
    assert bridge_rules == [
        "ufw allow in on docker0 from 172.18.0.0/16 to 172.18.0.1 port 53 proto udp comment 'gateways: dns'",
        "ufw allow in on docker0 from 172.18.0.0/16 to 172.18.0.1 port 53 proto tcp comment 'gateways: dns'",
        "ufw allow in on docker0 from 172.18.0.0/16 to 172.18.0.1 port 8091 proto tcp comment 'gateways: build server'",
        "ufw allow in on docker0 from 172.18.0.0/16 to 172.18.0.1 port 443 proto tcp comment 'gateways: ganymede over https'",
        "ufw allow in on docker0 from 172.18.0.0/16 to 172.18.0.1 port 4317 proto tcp comment 'gateways: otlp'",
        "ufw allow in on docker0 from 172.18.0.0/16 to 172.18.0.1 port 4318 proto tcp comment 'gateways: otlp'",
    ]


def test_extra_rules_take_ufws_printed_form(valid_data):
    extra = [
        {"ports": "8443", "protocol": "tcp", "comment": "admin api"},
        {"ports": "49100:49103", "protocol": "udp", "source": "198.51.100.0/24", "comment": "vpn from office"},
        {"ports": "18081", "protocol": "tcp", "target": "containers", "comment": "public container"},
        {"ports": "7000", "protocol": "udp", "target": "containers", "source": "2001:db8::/32", "comment": "v6 peers"},
    ]
    rules = ufw_rules(settings_with(valid_data, firewall_extra_rules=extra))[-4:]
    assert rules == [
        "ufw allow 8443/tcp comment 'admin api'",
        "ufw allow from 198.51.100.0/24 to any port 49100:49103 proto udp comment 'vpn from office'",
        "ufw route allow 18081/tcp comment 'public container'",
        "ufw route allow from 2001:db8::/32 to any port 7000 proto udp comment 'v6 peers'",
    ]


def test_one_address_sources_and_padded_ports_are_written_as_ufw_prints_them(valid_data):
    # ufw drops /32 and /128 and leading zeros: the rule must compare equal on the next run
    extra = [
        {"ports": "08443", "protocol": "tcp", "source": "198.51.100.7/32", "comment": "office"},
        {"ports": "9000", "protocol": "udp", "source": "2001:db8::7/128", "comment": "v6 office"},
    ]
    assert ufw_rules(settings_with(valid_data, firewall_extra_rules=extra))[-2:] == [
        "ufw allow from 198.51.100.7 to any port 8443 proto tcp comment 'office'",
        "ufw allow from 2001:db8::7 to any port 9000 proto udp comment 'v6 office'",
    ]
