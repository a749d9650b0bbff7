"""Every default setting, for every host. GENERATED from holistix_deploy/settings.py:
run `python -m holistix_deploy.docs` after changing the schema (a unit test checks it).

Override a key in your inventory's host data or in group_data/<group>.py; the README's
Settings table explains each one. Required keys have no default and are listed last."""

# core: Environment name; names the database (ganymede_<env>), the secrets directory /etc/holistix/<env> and the units. Lower case letters, digits, hyphens; at most 20.
environment = 'prod'

# core: Public IPv6 address of the host, or None when it has none (no AAAA records then).
public_ipv6 = None

# base: Account the operator and pyinfra log in as after the bootstrap run; gets passwordless sudo and exactly the keys in deploy_authorized_keys.
deploy_user = 'deploy'

# base: Debian/Ubuntu package names installed in addition to the base set.
base_extra_packages = []

# base: How old the apt package lists may be before a run refreshes them.
apt_cache_valid_seconds = 3600

# platform: Loopback TCP port Ganymede listens on (nginx proxies ganymede.DOMAIN to it).
ganymede_port = 6010

# platform: Number of gateway containers kept ready for organisations.
gateway_pool_size = 4

# platform: First TCP port of the gateways' HTTP ports (one per gateway, on the Docker bridge address only).
gateway_http_port_base = 7100

# platform: First UDP port of the gateways' VPN ports (one per gateway, public).
gateway_vpn_port_base = 49100

# platform: TCP port, on the Docker bridge address, of the server gateways fetch their build from.
gateway_build_server_port = 8090

# Required, no default (set them in the inventory): domain, admin_email, public_ipv4, deploy_authorized_keys
