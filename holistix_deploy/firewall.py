"""The firewall's rule set, derived from the settings, in the exact form `ufw show added`
prints (so the ufw_firewall operation can compare it with the host's rules)."""

from __future__ import annotations

from holistix_deploy.settings import MONITORING_LOOPBACK_PORTS, FirewallRule, Settings

DEFAULTS = {"incoming": "deny", "outgoing": "allow", "routed": "deny"}


def _source(rule: FirewallRule) -> str:
    # ufw prints a one-address network as the bare address (no /32, no /128)
    network = rule.source
    return str(network.network_address) if network.prefixlen == network.max_prefixlen else str(network)


def _opening(rule: FirewallRule) -> str:
    verb = "ufw route allow" if rule.target == "containers" else "ufw allow"
    if rule.source == "any":
        return f"{verb} {rule.ports}/{rule.protocol} comment '{rule.comment}'"
    return f"{verb} from {_source(rule)} to any port {rule.ports} proto {rule.protocol} comment '{rule.comment}'"


def ufw_rules(settings: Settings) -> list[str]:
    bridge = settings.docker_bridge_cidr
    rules = [
        # ufw's limit: at most 6 new connections in 30 s per source address
        "ufw limit 22/tcp comment 'ssh, rate limited'",
        "ufw allow 80/tcp comment 'http, redirects to https'",
        "ufw allow 443/tcp comment 'https'",
    ]
    if settings.dns_served_publicly:
        rules += [
            "ufw allow 53/tcp comment 'dns, authoritative for the domain'",
            "ufw allow 53/udp comment 'dns, authoritative for the domain'",
        ]
    # gateway containers on the Docker bridge reach these host services (they need no public port)
    for port, protocol, why in (
        (53, "udp", "gateways: dns"),
        (53, "tcp", "gateways: dns"),
        (settings.gateway_build_server_port, "tcp", "gateways: build server"),
        (443, "tcp", "gateways: ganymede over https"),
        (MONITORING_LOOPBACK_PORTS["otlp_grpc"], "tcp", "gateways: otlp"),
        (MONITORING_LOOPBACK_PORTS["otlp_http"], "tcp", "gateways: otlp"),
    ):
        rules.append(
            f"ufw allow in on docker0 from {bridge.network} to {bridge.ip} port {port} proto {protocol} comment '{why}'"
        )
    if settings.gateway_image is not None:
        # user containers dial their gateway's VPN from anywhere: the pool's UDP range, and only it
        first, last = settings.gateway_vpn_port_base, settings.gateway_vpn_port_base + settings.gateway_pool_size - 1
        ports = str(first) if first == last else f"{first}:{last}"
        rules.append(f"ufw route allow {ports}/udp comment 'gateways: vpn'")
    rules += [_opening(rule) for rule in settings.firewall_extra_rules]
    return rules
