"""Every default setting, for every host. GENERATED from holistix_deploy/settings.py:
run `python -m holistix_deploy.docs` after changing the schema (a unit test checks it).

Override a key in your inventory's host data or in group_data/<group>.py; the README's
Settings table explains each one. Required keys have no default and are listed last."""

# core: Environment name; names the database (ganymede_<env>), the secrets directory /etc/holistix/<env> and the units. Lower case letters, digits, hyphens; at most 20.
environment = 'prod'

# core: Public IPv6 address of the host, or None when it has none (no AAAA records then).
public_ipv6 = None

# core: SMTP server for platform mail and alerts (implicit TLS); its password comes from HOLISTIX_SMTP_PASSWORD. None leaves Ganymede's mail settings at the placeholder 'unconfigured'.
smtp_host = None

# core: SMTP port (implicit TLS).
smtp_port = 465

# core: Account name on the SMTP server (MAILING_USER).
smtp_user = None

# base: Account the operator and pyinfra log in as after the bootstrap run; gets passwordless sudo and exactly the keys in deploy_authorized_keys.
deploy_user = 'deploy'

# base: Debian/Ubuntu package names installed in addition to the base set.
base_extra_packages = []

# base: How old the apt package lists may be before a run refreshes them.
apt_cache_valid_seconds = 3600

# base: Extra sshd_config directives (e.g. {'AllowGroups': 'sudo'}), written after the hardening; the hardened keywords themselves cannot be overridden.
ssh_extra_options = {}

# base: Let unattended-upgrades reboot the host when an update needs it (at unattended_upgrades_reboot_time); off by default so reboots stay planned.
unattended_upgrades_reboot = False

# base: Host-time HH:MM of automatic reboots, when unattended_upgrades_reboot is on.
unattended_upgrades_reboot_time = '04:00'

# base: Cap of the persistent journal on disk (journald SystemMaxUse, e.g. 500M, 2G).
journald_max_use = '1G'

# base: NTP servers for systemd-timesyncd; empty keeps the distribution's pool.
time_servers = []

# base: Failed SSH logins from one address within 10 minutes before fail2ban bans it for an hour.
fail2ban_sshd_maxretry = 5

# base: Addresses fail2ban never bans (your office or bastion), as networks like 198.51.100.7/32.
fail2ban_ignore_networks = []

# base: Kernel parameters that replace or add to base's hardening set, e.g. {'net.ipv6.conf.all.accept_ra': '2'}.
sysctl_overrides = {}

# firewall: This host is the domain's public DNS server (CoreDNS authoritative, NS records delegated to it): opens 53/tcp and 53/udp to everyone.
dns_served_publicly = False

# firewall: Further openings: {'ports': '8443', 'protocol': 'tcp', 'source': 'any' or a network, 'target': 'host' or 'containers' (a port Docker publishes), 'comment': 'why'}.
firewall_extra_rules = []

# postgres: PostgreSQL max_connections; work_mem is sized from it.
postgres_max_connections = 100

# postgres: RAM (MB) the tuning formula assumes; None uses the host's total. Set it when PostgreSQL shares the host with other memory-hungry services.
postgres_memory_mb = None

# postgres: postgresql.conf keys that replace computed values or add settings, e.g. {'work_mem': '16MB'}; security keys (listen_addresses, ssl*, password_encryption, logging of connections) cannot be changed.
postgres_overrides = {}

# postgres: Connection limit of the environment's application role (ganymede_app_<env>).
postgres_app_connection_limit = 40

# postgres: A platform build's database/ directory on the machine that runs pyinfra (schema/, migrations/, procedures/): applied to ganymede_<env>, each file once. None applies nothing.
postgres_database_dir = None

# coredns: CoreDNS release installed to /usr/local/bin/coredns (changing it needs coredns_sha256 for it).
coredns_version = '1.14.7'

# coredns: Where the release tarball is fetched; {version} and {arch} (amd64, arm64) are filled in.
coredns_download_url = 'https://github.com/coredns/coredns/releases/download/v{version}/coredns_{version}_linux_{arch}.tgz'

# coredns: sha256 of the release tarball per architecture, from the release's .tgz.sha256 files; the host's architecture must be listed (a mismatch stops the run before anything changes).
coredns_sha256 = {}

# coredns: Resolvers CoreDNS forwards other names to, for this host and the Docker bridge only (everyone else gets REFUSED); also the host's fallback in /etc/resolv.conf.
dns_upstreams = ['8.8.8.8', '8.8.4.4']

# coredns: TTL (seconds) of the zone's records and of negative answers.
dns_ttl = 300

# coredns: Further NS names for the zone besides ns1.DOMAIN (secondaries you run elsewhere), as host names without a trailing dot.
dns_nameservers = []

# coredns: CAA identities of the only CAs allowed to issue for DOMAIN and *.DOMAIN (Let's Encrypt: letsencrypt.org); violations are reported to admin_email (iodef).
dns_caa_issuers = ['letsencrypt.org']

# coredns: Extra records: {'name': '@' or 'www', 'type': A|AAAA|CNAME|MX|TXT, 'value': ..., 'ttl': None}; e.g. MX '10 mail.example.com', TXT 'v=spf1 mx -all' at '@', TXT 'v=DMARC1; p=reject' at '_dmarc'.
dns_records = []

# nginx: Largest request body (MB) nginx passes to Ganymede; gateways push whole organisation snapshots (Ganymede's own JSON limit still applies behind it).
nginx_client_max_body_size_mb = 64

# nginx: Requests per minute one client address may make to Ganymede's sign-in and OAuth paths (burst of a third of it); more get 429. The Docker bridge (gateways) and loopback are exempt.
nginx_auth_rate_per_minute = 30

# nginx: Requests per second one client address may make to the rest of Ganymede's API (burst of three seconds' worth); more get 429. Static files have a much looser limit of their own.
nginx_api_rate_per_second = 20

# nginx: Path prefixes of Ganymede's sign-in, sign-up and OAuth endpoints, rate limited by nginx_auth_rate_per_minute.
nginx_auth_paths = ['/auth', '/login', '/logout', '/signup', '/register', '/password', '/oauth', '/github', '/gitlab', '/discord', '/linkedin']

# nginx: Further origins the frontend may connect to (Content-Security-Policy connect-src), e.g. a public OTLP endpoint 'https://otlp.example.com'; https://*.DOMAIN and wss://*.DOMAIN are always allowed.
nginx_csp_connect_extra = []

# letsencrypt: ACME CA issuing DOMAIN and *.DOMAIN: 'letsencrypt' (production), 'letsencrypt-staging', or the https URL of any ACME directory. The account is admin_email.
acme_directory = 'letsencrypt'

# letsencrypt: PEM file, on the machine that runs pyinfra, of the CA that signs the ACME directory's own HTTPS certificate, for a private ACME server (tests); None trusts the system's CAs.
acme_directory_ca_file = None

# letsencrypt: Where DNS-01 challenge records go: 'coredns' (this host is the domain's name server) or 'cloudflare' (the zone is hosted at Cloudflare; needs HOLISTIX_DNS_API_TOKEN, Zone:DNS:Edit).
acme_dns_provider = 'coredns'

# letsencrypt: Base URL of the Cloudflare API for the cloudflare provider; None is Cloudflare's own (set only to test against a stand-in).
acme_cloudflare_api_url = None

# letsencrypt: Seconds certbot waits after writing a challenge record at Cloudflare before asking the CA.
acme_cloudflare_propagation_seconds = 10

# letsencrypt: Organisation ids whose *.org-<uuid>.DOMAIN (the names of their user containers) join the certificate; organisations added on the host with holistix-certificate are kept as well.
acme_organisations = []

# platform: Address/prefix of Docker's default bridge (docker0): gateways reach the host's DNS, build server and HTTPS there.
docker_bridge_cidr = '172.17.0.1/16'

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

# ganymede: The platform build to run: {'version', 'source' (http(s) URL or a local file), 'sha256'}. Required by deploys/ganymede.py; a checksum mismatch stops the run before anything changes.
ganymede_release = None

# ganymede: Make this kept release current instead of ganymede_release (health-gated like any switch), e.g. --data ganymede_rollback_to=1.4.1. None runs ganymede_release.
ganymede_rollback_to = None

# ganymede: Releases kept under /opt/holistix/<env>/releases (the newest installed; the current one always).
ganymede_releases_kept = 3

# ganymede: Path asked on 127.0.0.1:ganymede_port after a restart; any answer below 500 means healthy (Ganymede has no health route: '/' answers 404 once it listens).
ganymede_health_path = '/'

# ganymede: How long a restarted release has to answer before the switch is rolled back.
ganymede_health_timeout_seconds = 60

# ganymede: MemoryMax of the ganymede@<env> unit (K, M or G suffix).
ganymede_memory_max = '2G'

# ganymede: CPUQuota of the unit, in percent of one CPU.
ganymede_cpu_quota_percent = 200

# ganymede: TasksMax of the unit (threads and processes).
ganymede_tasks_max = 512

# ganymede: Networks Ganymede may talk to beyond the host itself and the Docker bridge (its unit's IP allow list): OAuth providers and the SMTP server. ['0.0.0.0/0', '::/0'] allows any.
ganymede_egress_networks = []

# ganymede: A PEM file on the machine that runs pyinfra whose CAs Ganymede also trusts (NODE_EXTRA_CA_CERTS), for a test ACME CA; certificate checks are never turned off.
ganymede_extra_ca_file = None

# ganymede: OAuth client IDs of the login providers; their secrets come from HOLISTIX_<PROVIDER>_CLIENT_SECRET. A provider left out gets the placeholder 'unconfigured' (its login does not work).
ganymede_oauth_client_ids = {}

# ganymede: More plain variables for Ganymede (RATE_LIMIT_*, DEBUG_API...); the ones the module sets, secrets and NODE_TLS_REJECT_UNAUTHORIZED are refused.
ganymede_environment = {}

# ganymede: Where Node.js comes from: NodeSource's apt repository (key pinned by fingerprint), or the distribution's nodejs (older than the platform's Node 24: for tests).
nodejs_source = 'nodesource'

# ganymede: Node.js major version taken from NodeSource (node_<major>.x).
nodejs_major = 24

# gateway_pool: The gateway image as a `docker save` tarball: {'tag', 'source' (http(s) URL or a local file), 'sha256'}. Required by deploys/gateway_pool.py; loaded with docker load once per checksum.
gateway_image = None

# gateway_pool: Memory limit of each gateway container (K, M or G).
gateway_memory_max = '1G'

# gateway_pool: CPU limit of each gateway container (CPUs).
gateway_cpus = 1.0

# gateway_pool: Process limit of each gateway container.
gateway_pids_max = 512

# backups: Daily snapshots kept (restic forget --keep-daily); at least 1, so the newest is never pruned.
backup_keep_daily = 7

# backups: Weekly snapshots kept (--keep-weekly).
backup_keep_weekly = 4

# backups: Monthly snapshots kept (--keep-monthly).
backup_keep_monthly = 12

# backups: When the daily backup runs (systemd OnCalendar, host time; checked by systemd-analyze calendar on the host). A run missed while the host was off happens at boot.
backup_schedule = '*-*-* 02:00:00'

# backups: Random delay added to each scheduled backup, check and restore test (RandomizedDelaySec).
backup_randomized_delay_seconds = 600

# backups: When restic check verifies the repositories (OnCalendar).
backup_check_schedule = 'Sun *-*-* 03:30:00'

# backups: Share of the packs restic check reads and decrypts each time (--read-data-subset: '10%' or 'n/t').
backup_check_read_data_subset = '10%'

# backups: When the newest snapshot is restored into a scratch database and directory and compared with its manifest (OnCalendar).
backup_restore_test_schedule = 'Sun *-*-* 04:30:00'

# backups: A second restic repository that gets the same snapshots: 'sftp:user@host:/path' (key generated on the host; see backup_offsite_known_hosts) or 's3:https://host/bucket/path' (keys from HOLISTIX_BACKUP_S3_ACCESS_KEY_ID and HOLISTIX_BACKUP_S3_SECRET_ACCESS_KEY). None keeps only the local repository, which does not survive the loss of the host.
backup_offsite_repository = None

# backups: SSH port of the sftp off-site repository.
backup_offsite_sftp_port = 22

# backups: known_hosts lines of the sftp off-site server (ssh-keyscan output you checked); required for an sftp repository: the host key is never taken on first use.
backup_offsite_known_hosts = []

# monitoring: Days of metrics Prometheus keeps.
monitoring_retention_days = 30

# monitoring: Disk Prometheus's metrics may take (K, M or G, binary: 4G is 4 GiB); the oldest blocks go first when it is reached.
monitoring_retention_size = '4G'

# monitoring: How often Prometheus scrapes every target and evaluates the alert rules.
monitoring_scrape_interval_seconds = 15

# monitoring: PEM file, on the machine that runs pyinfra, of the only CA the HTTPS probes then trust, instead of the system's (a private ACME CA in tests); None trusts the system's CAs, as production should.
monitoring_probe_ca_file = None

# monitoring: Serve the dashboards' front door (Prometheus's consoles, alerts and queries; the logs' and traces' views) at https://<dashboards_subdomain>.DOMAIN as well, behind the generated password; false keeps it on 127.0.0.1:3000 only, for commands on the host (sshd allows no tunnel).
dashboards_public = False

# monitoring: The front door's name under DOMAIN when dashboards_public is true (the wildcard certificate and DNS record cover it).
dashboards_subdomain = 'dashboards'

# monitoring: Days of logs (the journal's and nginx's) VictoriaLogs keeps; older days are dropped whole.
logs_retention_days = 14

# monitoring: Disk VictoriaLogs may take (K, M or G, binary); the oldest days go first when it is reached.
logs_retention_size = '4G'

# monitoring: VictoriaLogs release whose victoria-logs, vlagent and vlogscli go to /usr/local/bin (changing it needs victorialogs_sha256 for its tarballs).
victorialogs_version = '1.52.1'

# monitoring: Where VictoriaLogs's release tarballs are fetched; {name} (victoria-logs, vlutils), {version} and {arch} (amd64, arm64) are filled in.
victorialogs_download_url = 'https://github.com/VictoriaMetrics/VictoriaLogs/releases/download/v{version}/{name}-linux-{arch}-v{version}.tar.gz'

# monitoring: sha256 of each release tarball the host needs, keyed by the tarball's file name, from the release's _checksums.txt files (a missing or wrong one stops the run before anything changes).
victorialogs_sha256 = {}

# monitoring: Hours Jaeger keeps a span (its Badger store's TTL); Badger has no size cap, so keep this short.
traces_retention_hours = 72

# monitoring: Jaeger (v2) release installed to /usr/local/bin/jaeger: the OTLP endpoint for Ganymede and the gateways, the traces' store and UI (changing it needs jaeger_sha256 for it).
jaeger_version = '2.13.0'

# monitoring: Where Jaeger's release tarball is fetched; {version} and {arch} (amd64, arm64) are filled in.
jaeger_download_url = 'https://github.com/jaegertracing/jaeger/releases/download/v{version}/jaeger-{version}-linux-{arch}.tar.gz'

# monitoring: sha256 of Jaeger's release tarball per architecture, from the release's jaeger-<version>.sha256sum.txt; the host's architecture must be listed.
jaeger_sha256 = {}

# monitoring: Addresses Alertmanager mails alerts to, through smtp_host as smtp_user (password from HOLISTIX_SMTP_PASSWORD). Empty sends no mail.
alert_email_to = []

# monitoring: Sender of alert mail; None is alerts@DOMAIN.
alert_email_from = None

# monitoring: http(s) URL Alertmanager posts alerts to (its webhook JSON), e.g. a chat bridge or paging service; kept in alertmanager.yml (0640, root:prometheus). A URL that carries a token is a credential: read it from the environment in your inventory file rather than writing it there. With neither alert_email_to nor this, alerts are only seen in Alertmanager.
alert_webhook_url = None

# monitoring: How long Alertmanager gathers the first alerts of a group before it notifies.
alert_group_wait_seconds = 30

# monitoring: How long Alertmanager waits before it tells about new or resolved alerts of a group it already notified.
alert_group_interval_seconds = 300

# monitoring: How often a still-firing alert is sent again.
alert_repeat_hours = 4

# monitoring: A filesystem fuller than this for 10 minutes alerts.
alert_disk_used_percent = 80

# monitoring: Memory in use (not available to new work) above this for 10 minutes alerts.
alert_memory_used_percent = 90

# monitoring: Share of Ganymede's responses through nginx that are 5xx, over 5 minutes, that alerts (with at least alert_api_min_requests_per_minute requests).
alert_api_error_percent = 5.0

# monitoring: Below this request rate the API error alert stays quiet (two failed calls of five are not an outage).
alert_api_min_requests_per_minute = 1.0

# monitoring: A served certificate that has had fewer days left than this for a whole day alerts (certbot renews at 30 days left and tries twice a day).
alert_certificate_days = 30

# monitoring: A last successful backup older than this alerts (a daily backup plus its random delay).
alert_backup_max_age_hours = 26

# monitoring: A last successful restore test older than this alerts (a weekly test plus a day).
alert_restore_test_max_age_days = 8

# Required, no default (set them in the inventory): domain, admin_email, public_ipv4, deploy_authorized_keys
