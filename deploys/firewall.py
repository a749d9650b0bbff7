"""firewall: ufw with default deny, only the platform's ports open, Docker unable to bypass it.

Manages: ufw (IPv4 and IPv6): deny incoming, allow outgoing, deny routed; 22/tcp rate
limited, 80/tcp, 443/tcp, 53/tcp+udp when dns_served_publicly; the Docker bridge may reach
the host's DNS, the gateway build server and HTTPS; firewall_extra_rules. A DOCKER-USER block
in /etc/ufw/after.rules so ports Docker publishes are reachable only when a rule says so.
Every change is proven by a fresh SSH login, or ufw is disabled again and the run fails.

Reads: dns_served_publicly, firewall_extra_rules, docker_bridge_cidr, gateway_build_server_port.
Reloads: ufw (on change only).

    pyinfra inventories/prod.py deploys/firewall.py
"""

from pyinfra import host
from pyinfra.operations import apt, files, server, systemd

from holistix_deploy import firewall
from holistix_deploy.operations import ufw_firewall, ufw_rules_block
from holistix_deploy.settings import load_settings
from holistix_deploy.templating import render

settings = load_settings(host)

apt.packages(
    name="Ensure ufw is installed",
    packages=["ufw"],
    update=True,
    cache_time=settings.apt_cache_valid_seconds,
    no_recommends=True,
)
ipv6 = files.line(
    name="Ensure ufw filters IPv6 as well as IPv4",
    path="/etc/default/ufw",
    line="^IPV6=.*",
    replace="IPV6=yes",
)
# ufw's own sysctl file turns log_martians off again after base set it: base alone owns
# kernel parameters, so ufw is told to apply none
ufw_sysctl = files.line(
    name="Ensure ufw leaves kernel parameters to base",
    path="/etc/default/ufw",
    line="^IPT_SYSCTL=.*",
    replace="IPT_SYSCTL=",
)
systemd.service(
    name="Ensure base's kernel parameters are in force again",
    service="systemd-sysctl",
    running=None,
    restarted=True,
    _if=ufw_sysctl.did_change,
)
server.shell(
    name="Ensure ufw has loaded its IPv6 rules",
    commands=["if ufw status | grep -q '^Status: active'; then ufw reload; fi"],
    _if=ipv6.did_change,
)
ufw_rules_block(
    name="Ensure ports Docker publishes obey the firewall (DOCKER-USER rules)",
    path="/etc/ufw/after.rules",
    block=render("firewall/docker-user.rules.j2"),
    marker="HOLISTIX DOCKER-USER",
)
ufw_firewall(
    name="Ensure ufw is active with exactly the platform's rules (proven by a fresh SSH login)",
    rules=firewall.ufw_rules(settings),
    defaults=firewall.DEFAULTS,
)
systemd.service(
    name="Ensure ufw is enabled at boot",
    service="ufw",
    running=True,
    enabled=True,
)
