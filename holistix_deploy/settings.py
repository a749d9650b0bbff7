"""The one settings schema: every inventory data key, its type, default and meaning.

Data flows one way: inventory and group_data -> ``load_settings(host)`` (validated,
frozen ``Settings``) -> operations. Deploy files never read ``host.data`` directly.

The README's settings table and ``group_data/all.py`` are generated from this file
(``python -m holistix_deploy.docs``); a unit test fails when either is stale.
"""

from __future__ import annotations

import base64
import difflib
import ipaddress
import re
import struct
import uuid
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pyinfra.api.exceptions import PyinfraError

from holistix_deploy.secrets import OPERATOR_SECRETS, OperatorSecretError, read_operator_secrets

# Module names a setting can belong to; "core" is read by several modules.
MODULES = (
    "core",
    "base",
    "firewall",
    "postgres",
    "coredns",
    "nginx",
    "letsencrypt",
    "platform",
    "ganymede",
    "gateway_pool",
    "backups",
    "monitoring",
)

_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_ENVIRONMENT = re.compile(r"^[a-z][a-z0-9-]{0,19}$")
_POSIX_USER = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
_DEBIAN_PACKAGE = re.compile(r"^[a-z0-9][a-z0-9+.-]+$")
_EMAIL_LOCAL = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}$")

# Accounts a distro or a platform component owns; the deploy user must be a person's account.
_RESERVED_USERS = frozenset(
    [
        "root",
        "daemon",
        "bin",
        "sys",
        "sync",
        "games",
        "man",
        "lp",
        "mail",
        "news",
        "uucp",
        "proxy",
        "www-data",
        "backup",
        "list",
        "irc",
        "nobody",
        "systemd-network",
        "systemd-resolve",
        "systemd-timesync",
        "messagebus",
        "sshd",
        "postgres",
        "prometheus",
        "coredns",
        "holistix",
        "ganymede",
        "_apt",
    ]
)

# Longest name the platform builds under DOMAIN: "uc-<id>--<space>--<svc>.org-<uuid>." leaves
# DNS's 253-character limit with room only if the domain stays under this.
_DOMAIN_MAX = 180

# SSH public key types accepted for the deploy user (no DSA; RSA only when >= 3072 bits).
_SSH_KEY_TYPES = frozenset(
    {
        "ssh-ed25519",
        "sk-ssh-ed25519@openssh.com",
        "ecdsa-sha2-nistp256",
        "ecdsa-sha2-nistp384",
        "ecdsa-sha2-nistp521",
        "sk-ecdsa-sha2-nistp256@openssh.com",
        "ssh-rsa",
    }
)
_RSA_MIN_BITS = 3072


def _setting(default: Any = ..., *, module: str, description: str, **kwargs: Any) -> Any:
    if module not in MODULES:
        raise ValueError(f"unknown module {module!r} for a setting")
    return Field(default, description=description, json_schema_extra={"module": module}, **kwargs)


def _check_email(value: str) -> str:
    local, at, domain = value.rpartition("@")
    if not at or not _EMAIL_LOCAL.fullmatch(local):
        raise ValueError("must be an e-mail address like ops@example.com")
    try:
        _check_dns_name(domain)
    except ValueError as error:
        raise ValueError(f"must be an e-mail address; its domain {error}") from None
    return value


def _check_release_url(value: str, placeholders: tuple[str, ...], required: tuple[str, ...]) -> str:
    """A release download URL template: http(s), only known {placeholders}, each required one present."""
    if not re.fullmatch(r"https?://[^\s'\"\\]+", value):
        raise ValueError("must be an http(s) URL without spaces or quotes")
    unknown = set(re.findall(r"{([^}]*)}", value)) - set(placeholders)
    if unknown:
        known = " and ".join(", ".join(f"{{{name}}}" for name in placeholders).rsplit(", ", 1))
        raise ValueError(f"placeholder {{{sorted(unknown)[0]}}} is unknown; only {known} exist")
    for name in required:
        if f"{{{name}}}" not in value:
            raise ValueError(
                f"must contain {{{name}}}: each {'tarball' if name == 'name' else 'architecture'} has its own file"
            )
    return value


def _check_dns_name(value: str) -> str:
    if value != value.lower():
        raise ValueError("must be lower case")
    if value.endswith("."):
        raise ValueError("must not end with a dot")
    labels = value.split(".")
    if len(labels) < 2:
        raise ValueError("must have at least two labels, like example.com")
    bad = [label for label in labels if not _LABEL.fullmatch(label)]
    if bad:
        raise ValueError(f"label {bad[0]!r} is not a DNS label (letters, digits and inner hyphens, 1-63 characters)")
    if labels[-1].isdigit():
        raise ValueError("must be a DNS name, not an IP address")
    return value


def _check_reachable_address(address: ipaddress.IPv4Address | ipaddress.IPv6Address):
    if address.is_loopback or address.is_unspecified or address.is_multicast or address.is_link_local:
        raise ValueError(
            "must be a unicast address other machines can reach (not loopback, unspecified, multicast or link-local)"
        )
    return address


def _ssh_blob_fields(blob: bytes) -> list[bytes]:
    """Split an SSH wire-format key blob into its length-prefixed fields; ValueError if damaged."""
    fields, offset = [], 0
    while offset < len(blob):
        if offset + 4 > len(blob):
            raise ValueError("truncated length")
        (length,) = struct.unpack(">I", blob[offset : offset + 4])
        if offset + 4 + length > len(blob):
            raise ValueError("truncated field")
        fields.append(blob[offset + 4 : offset + 4 + length])
        offset += 4 + length
    return fields


# fields after the type name, per key type (an ed25519 key is one 32-byte field)
_SSH_KEY_FIELD_COUNT = {
    "ssh-ed25519": 1,
    "ssh-rsa": 2,
    "sk-ssh-ed25519@openssh.com": 2,
    "sk-ecdsa-sha2-nistp256@openssh.com": 3,
}


def _check_public_key(line: str) -> str:
    parts = line.strip().split()
    if len(parts) < 2:
        raise ValueError("must be an OpenSSH public key line: '<type> <base64> [comment]'")
    key_type, encoded = parts[0], parts[1]
    if key_type not in _SSH_KEY_TYPES:
        raise ValueError(f"key type {key_type!r} is not accepted (use ssh-ed25519, ecdsa or rsa >= 3072 bits)")
    damaged = "key data is not valid base64 of an SSH key blob (truncated or pasted wrong?)"
    try:
        fields = _ssh_blob_fields(base64.b64decode(encoded, validate=True))
        embedded_type = fields[0].decode()
    except Exception as error:  # any decoding problem means a damaged key
        raise ValueError(damaged) from error
    if embedded_type != key_type:
        raise ValueError(f"key data says {embedded_type!r} but the line says {key_type!r}")
    expected = _SSH_KEY_FIELD_COUNT.get(key_type, 2)  # ecdsa: curve name and point
    if len(fields) - 1 != expected or (key_type == "ssh-ed25519" and len(fields[1]) != 32):
        raise ValueError(damaged)
    bits = len(fields[2].lstrip(b"\0")) * 8 if key_type == "ssh-rsa" else None
    if bits is not None and bits < _RSA_MIN_BITS:
        raise ValueError(f"RSA key has {bits} bits; at least {_RSA_MIN_BITS} are required")
    return line.strip()


PublicKey = Annotated[str, Field(min_length=1)]

# sshd keywords base owns; an operator's ssh_extra_options may not weaken them.
SSHD_MANAGED_KEYWORDS = frozenset(
    k.lower()
    for k in [
        "PasswordAuthentication",
        "KbdInteractiveAuthentication",
        "PermitRootLogin",
        "PubkeyAuthentication",
        "AuthenticationMethods",
        "MaxAuthTries",
        "LoginGraceTime",
        "X11Forwarding",
        "AllowAgentForwarding",
        "AllowTcpForwarding",
        "PermitTunnel",
        "PermitUserEnvironment",
        "KexAlgorithms",
        "Ciphers",
        "MACs",
        "HostKeyAlgorithms",
        "HostKey",
        "Port",
        "ListenAddress",
        "PermitEmptyPasswords",
        "UsePAM",
        "Include",
        "Match",
    ]
)
_COMMENT = re.compile(r"^[A-Za-z0-9 ._:/+-]{1,60}$")
_PORTS = re.compile(r"^(\d{1,5})(?::(\d{1,5}))?$")
# ACME directories known by name; any other https URL is taken as it is
ACME_DIRECTORIES = {
    "letsencrypt": "https://acme-v02.api.letsencrypt.org/directory",
    "letsencrypt-staging": "https://acme-staging-v02.api.letsencrypt.org/directory",
}
# names one certificate may hold (Let's Encrypt's limit)
ACME_MAX_NAMES = 100
# CoreDNS's own loopback listeners (health, readiness, Prometheus metrics)
COREDNS_LOOPBACK_PORTS = {"health": 8080, "ready": 8181, "metrics": 9153}
# names the platform itself serves under DOMAIN (platform contract 5; ns1 is the zone's NS)
_PLATFORM_NAMES = frozenset({"ganymede", "ns1"})
_PLATFORM_PREFIXES = ("org-", "uc-")
# The monitoring stack's loopback listeners (the packages' usual ports; nginx's stub_status on 8088)
MONITORING_LOOPBACK_PORTS = {
    "prometheus": 9090,
    "alertmanager": 9093,
    "node_exporter": 9100,
    "postgres_exporter": 9187,
    "nginx_exporter": 9113,
    "blackbox_exporter": 9115,
    "mtail": 3903,
    "nginx_status": 8088,
    # nginx: the dashboards' front door on loopback (for commands on the host), behind the password
    "dashboards": 3000,
    "victorialogs": 9428,
    "vlagent": 9429,
    # Jaeger: its UI and query API, its own metrics and health; the OTLP receivers (also on the
    # Docker bridge's address, for the gateways)
    "jaeger_ui": 16686,
    "jaeger_query_grpc": 16685,
    "jaeger_metrics": 8888,
    "jaeger_health": 13133,
    "otlp_grpc": 4317,
    "otlp_http": 4318,
}
# the VictoriaLogs release tarballs the monitoring module installs from ({name} in victorialogs_download_url)
VICTORIALOGS_TARBALLS = ("victoria-logs", "vlutils")
_SIZE = re.compile(r"^[1-9]\d*[KMG]$")
_CLOCK = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")


class FirewallRule(BaseModel):
    """One extra opening in the firewall, beyond what the modules open themselves."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ports: str = Field(description="a port (8443) or an inclusive range (49100:49103)")
    protocol: Literal["tcp", "udp"]
    source: ipaddress.IPv4Network | ipaddress.IPv6Network | Literal["any"] = "any"
    target: Literal["host", "containers"] = Field(
        "host", description="host: a service of the host; containers: a port Docker publishes"
    )
    comment: str = Field(description="why it is open; letters, digits, space and ._:/+- only")

    @field_validator("ports", mode="before")
    @classmethod
    def _ports_are_a_port_or_range(cls, value):
        match = _PORTS.fullmatch(str(value))
        first, last = (int(match[1]), int(match[2] or match[1])) if match else (0, 0)
        if not match or not 1 <= first <= last <= 65535:
            raise ValueError("must be a port 1-65535 or a range like 49100:49103")
        # as ufw prints it back (no leading zeros), so the rule compares equal on the next run
        return str(first) if first == last and not match[2] else f"{first}:{last}"

    @field_validator("comment")
    @classmethod
    def _comment_is_plain(cls, value: str) -> str:
        if not _COMMENT.fullmatch(value):
            raise ValueError("comment must be 1-60 letters, digits, spaces or ._:/+- (it is passed to ufw)")
        return value


_RELATIVE_NAME = re.compile(r"^(\*|[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9])?)(\.[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9])?)*$")
_MX_VALUE = re.compile(r"^(\d{1,5}) (\S+)$")
_TXT_VALUE = re.compile(r"^[\x20-\x7e]{1,2000}$")
# names whose records the coredns module writes itself (see holistix_deploy/dns.py)
DNS_OWNED_NAMES = frozenset({"@", "ns1", "ganymede", "*"})


class DnsRecord(BaseModel):
    """One extra record in the domain's zone (mail, SPF, DMARC, verification, aliases)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="'@' for DOMAIN itself, or a name relative to DOMAIN such as 'www' or '_dmarc'")
    type: Literal["A", "AAAA", "CNAME", "MX", "TXT"]
    value: str = Field(description="A: IPv4, AAAA: IPv6, CNAME: a host name, MX: '10 mail.example.com', TXT: text")
    ttl: int | None = Field(None, ge=60, le=86400, description="seconds; None uses dns_ttl")

    @field_validator("name")
    @classmethod
    def _name_is_relative(cls, value: str) -> str:
        if value != "@" and (not _RELATIVE_NAME.fullmatch(value) or len(value) > 63 * 3):
            raise ValueError(
                "must be '@' or a name relative to DOMAIN (lower case labels like 'www' or '_dmarc', no trailing dot)"
            )
        if value == "_acme-challenge" or value.startswith("_acme-challenge."):
            raise ValueError("_acme-challenge names belong to the letsencrypt module's DNS-01 challenges")
        return value

    @model_validator(mode="after")
    def _value_fits_the_type(self) -> DnsRecord:
        where = f"{self.type} record {self.name!r}"
        if self.type in ("A", "AAAA"):
            version = 4 if self.type == "A" else 6
            try:
                address = ipaddress.ip_address(self.value)
            except ValueError:
                address = None
            if address is None or address.version != version:
                raise ValueError(f"{where}: value {self.value!r} is not an IPv{version} address")
        elif self.type in ("CNAME", "MX"):
            match = _MX_VALUE.fullmatch(self.value) if self.type == "MX" else None
            if self.type == "MX" and (not match or int(match[1]) > 65535):
                raise ValueError(f"{where}: value {self.value!r} must be '<preference 0-65535> <mail host name>'")
            target = match[2] if match else self.value
            try:
                _check_dns_name(target.removesuffix("."))
            except ValueError as error:
                raise ValueError(f"{where}: target {target!r} {error}") from None
            if self.type == "CNAME" and self.name in DNS_OWNED_NAMES:
                raise ValueError(f"{where}: a CNAME cannot sit at {self.name!r}, which holds the module's own records")
        elif not _TXT_VALUE.fullmatch(self.value):
            raise ValueError(f"{where}: text must be 1-2000 printable ASCII characters")
        if self.type in ("A", "AAAA") and self.name in DNS_OWNED_NAMES:
            raise ValueError(f"{where}: {self.name!r} already points at public_ipv4/public_ipv6")
        return self


RELEASE_VERSION = re.compile(r"^[0-9A-Za-z][0-9A-Za-z._+-]{0,63}$")
OAUTH_PROVIDERS = ("github", "gitlab", "discord", "linkedin")
_ENVIRONMENT_NAME = re.compile(r"^[A-Z][A-Z0-9_]{0,63}$")


def _version_text(value):
    """pyinfra's --data turns 2 into an int and 1.10 into the float 1.1: take ints back as text,
    refuse floats (their text is already lost)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        raise ValueError(
            f"{value!r} arrived as a number (pyinfra --data parses 1.10 as 1.1): quote it, --data 'KEY=\"1.10\"'"
        )
    return value


def _check_release_version(value: str) -> str:
    if not RELEASE_VERSION.fullmatch(value) or value in ("current", "releases"):
        raise ValueError(
            "must be a release version like 1.4.2 or 2026.11.27-3 (letters, digits and ._+-, at most 64, "
            "not 'current' or 'releases')"
        )
    return value


class Artifact(BaseModel):
    """A file the host gets by URL or from the operator's machine, checked by its sha256."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    source: str = Field(description="an http(s) URL the host downloads, or a file on the machine that runs pyinfra")
    sha256: str = Field(description="sha256 of the file (64 lower case hex digits)")

    @field_validator("sha256")
    @classmethod
    def _sha256_is_hex(cls, value: str) -> str:
        if not re.fullmatch(r"[0-9a-f]{64}", value):
            raise ValueError("must be a sha256: 64 lower case hex digits")
        return value

    @field_validator("source")
    @classmethod
    def _source_is_a_url_or_an_absolute_file(cls, value: str) -> str:
        from pathlib import Path

        if re.match(r"https?://", value):
            if not re.fullmatch(r"https?://[^\s'\"\\@?#]+", value):
                raise ValueError(
                    f"{value!r}: a URL without spaces, quotes, credentials or a query (the host's process list "
                    "and pyinfra's output show it); download a signed URL yourself and give the file"
                )
            return value
        local = Path(value).expanduser().absolute()
        if not local.is_file():
            raise ValueError(f"{value!r} is neither an http(s) URL nor a file on this machine")
        return str(local)

    @model_validator(mode="after")
    def _a_local_file_has_the_checksum(self) -> Artifact:
        import hashlib

        if re.match(r"https?://", self.source):
            return self
        digest = hashlib.sha256()
        with open(self.source, "rb") as stream:
            for block in iter(lambda: stream.read(1 << 20), b""):
                digest.update(block)
        digest = digest.hexdigest()
        if digest != self.sha256:
            raise ValueError(
                f"source {self.source!r} has sha256 {digest}, not {self.sha256}: refused before anything changes"
            )
        return self


class GanymedeRelease(Artifact):
    """One platform build: its version, where to get the tarball, and its sha256."""

    version: str = Field(description="names the directory /opt/holistix/<env>/releases/<version>; never reused")

    @field_validator("version", mode="before")
    @classmethod
    def _version_from_the_command_line(cls, value):
        return _version_text(value)

    @field_validator("version")
    @classmethod
    def _version_is_a_name(cls, value: str) -> str:
        return _check_release_version(value)


class GatewayImage(Artifact):
    """The gateway image as `docker save` wrote it: the tag it carries, where to get it, its sha256."""

    tag: str = Field(description="repository:tag inside the tarball, e.g. holistix-gateway:1.4.2")

    @field_validator("tag")
    @classmethod
    def _tag_is_a_docker_reference(cls, value: str) -> str:
        if not re.fullmatch(r"[a-z0-9]+(?:[._/-][a-z0-9]+)*:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}", value):
            raise ValueError("must be a Docker image reference with a tag, like holistix-gateway:1.4.2")
        return value


class Settings(BaseModel):
    """Validated, frozen settings of one host."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)

    # -- core: identity of the environment ------------------------------------------------
    domain: str = _setting(
        module="core",
        description="Base domain of the platform: the frontend is served at DOMAIN, the API at "
        "ganymede.DOMAIN, organisations at org-<uuid>.DOMAIN.",
        examples=["app.example.com"],
    )
    environment: str = _setting(
        "prod",
        module="core",
        description="Environment name; names the database (ganymede_<env>), the secrets directory "
        "/etc/holistix/<env> and the units. Lower case letters, digits, hyphens; at most 20.",
    )
    admin_email: str = _setting(
        module="core",
        description="Operator contact: ACME account, SOA contact, alert mail recipient.",
        examples=["ops@example.com"],
    )
    public_ipv4: ipaddress.IPv4Address = _setting(
        module="core",
        description="Public IPv4 address of the host; DNS records point at it.",
        examples=["203.0.113.10"],
    )
    public_ipv6: ipaddress.IPv6Address | None = _setting(
        None,
        module="core",
        description="Public IPv6 address of the host, or None when it has none (no AAAA records then).",
    )

    # -- base --------------------------------------------------------------------------------
    deploy_user: str = _setting(
        "deploy",
        module="base",
        description="Account the operator and pyinfra log in as after the bootstrap run; gets "
        "passwordless sudo and exactly the keys in deploy_authorized_keys.",
    )
    deploy_authorized_keys: list[PublicKey] = _setting(
        module="base",
        min_length=1,
        description="OpenSSH public keys allowed to log in as deploy_user (ed25519, ecdsa, or RSA of "
        "3072 bits or more). Keys not listed are removed.",
        examples=[["ssh-ed25519 AAAAC3Nza... ops@laptop"]],
    )
    base_extra_packages: list[str] = _setting(
        [],
        module="base",
        description="Debian/Ubuntu package names installed in addition to the base set.",
    )
    apt_cache_valid_seconds: int = _setting(
        3600,
        module="base",
        ge=0,
        description="How old the apt package lists may be before a run refreshes them.",
    )

    ssh_extra_options: dict[str, str] = _setting(
        {},
        module="base",
        description="Extra sshd_config directives (e.g. {'AllowGroups': 'sudo'}), written after the "
        "hardening; the hardened keywords themselves cannot be overridden.",
    )
    unattended_upgrades_reboot: bool = _setting(
        False,
        module="base",
        description="Let unattended-upgrades reboot the host when an update needs it (at "
        "unattended_upgrades_reboot_time); off by default so reboots stay planned.",
    )
    unattended_upgrades_reboot_time: str = _setting(
        "04:00",
        module="base",
        description="Host-time HH:MM of automatic reboots, when unattended_upgrades_reboot is on.",
    )
    journald_max_use: str = _setting(
        "1G",
        module="base",
        description="Cap of the persistent journal on disk (journald SystemMaxUse, e.g. 500M, 2G).",
    )
    time_servers: list[str] = _setting(
        [],
        module="base",
        description="NTP servers for systemd-timesyncd; empty keeps the distribution's pool.",
    )
    fail2ban_sshd_maxretry: int = _setting(
        5,
        module="base",
        ge=2,
        le=20,
        description="Failed SSH logins from one address within 10 minutes before fail2ban bans it for an hour.",
    )
    fail2ban_ignore_networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = _setting(
        [],
        module="base",
        description="Addresses fail2ban never bans (your office or bastion), as networks like 198.51.100.7/32.",
    )
    sysctl_overrides: dict[str, str] = _setting(
        {},
        module="base",
        description="Kernel parameters that replace or add to base's hardening set, e.g. {'net.ipv6.conf.all.accept_ra': '2'}.",
    )

    # -- firewall ------------------------------------------------------------------------------
    dns_served_publicly: bool = _setting(
        False,
        module="firewall",
        description="This host is the domain's public DNS server (CoreDNS authoritative, NS records "
        "delegated to it): opens 53/tcp and 53/udp to everyone.",
    )
    firewall_extra_rules: list[FirewallRule] = _setting(
        [],
        module="firewall",
        description="Further openings: {'ports': '8443', 'protocol': 'tcp', 'source': 'any' or a network, "
        "'target': 'host' or 'containers' (a port Docker publishes), 'comment': 'why'}.",
    )
    docker_bridge_cidr: ipaddress.IPv4Interface = _setting(
        ipaddress.IPv4Interface("172.17.0.1/16"),
        module="platform",
        description="Address/prefix of Docker's default bridge (docker0): gateways reach the host's DNS, "
        "build server and HTTPS there.",
    )

    # -- postgres -------------------------------------------------------------------------------
    postgres_max_connections: int = _setting(
        100,
        module="postgres",
        ge=20,
        le=5000,
        description="PostgreSQL max_connections; work_mem is sized from it.",
    )
    postgres_memory_mb: int | None = _setting(
        None,
        module="postgres",
        ge=256,
        description="RAM (MB) the tuning formula assumes; None uses the host's total. Set it when PostgreSQL "
        "shares the host with other memory-hungry services.",
    )
    postgres_overrides: dict[str, str] = _setting(
        {},
        module="postgres",
        description="postgresql.conf keys that replace computed values or add settings, e.g. {'work_mem': '16MB'}; "
        "security keys (listen_addresses, ssl*, password_encryption, logging of connections) cannot be changed.",
    )
    postgres_app_connection_limit: int = _setting(
        40,
        module="postgres",
        ge=1,
        description="Connection limit of the environment's application role (ganymede_app_<env>).",
    )
    postgres_database_dir: str | None = _setting(
        None,
        module="postgres",
        description="A platform build's database/ directory on the machine that runs pyinfra (schema/, "
        "migrations/, procedures/): applied to ganymede_<env>, each file once. None applies nothing.",
    )

    # -- coredns ------------------------------------------------------------------------------
    coredns_version: str = _setting(
        "1.14.7",
        module="coredns",
        description="CoreDNS release installed to /usr/local/bin/coredns (changing it needs coredns_sha256 for it).",
    )
    coredns_download_url: str = _setting(
        "https://github.com/coredns/coredns/releases/download/v{version}/coredns_{version}_linux_{arch}.tgz",
        module="coredns",
        description="Where the release tarball is fetched; {version} and {arch} (amd64, arm64) are filled in.",
    )
    coredns_sha256: dict[Literal["amd64", "arm64"], str] = _setting(
        {},
        module="coredns",
        description="sha256 of the release tarball per architecture, from the release's .tgz.sha256 files; "
        "the host's architecture must be listed (a mismatch stops the run before anything changes).",
        examples=[{"amd64": "<64 hex digits from coredns_1.14.7_linux_amd64.tgz.sha256>"}],
    )
    dns_upstreams: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = _setting(
        [ipaddress.IPv4Address("8.8.8.8"), ipaddress.IPv4Address("8.8.4.4")],
        module="coredns",
        min_length=1,
        max_length=8,
        description="Resolvers CoreDNS forwards other names to, for this host and the Docker bridge only "
        "(everyone else gets REFUSED); also the host's fallback in /etc/resolv.conf.",
    )
    dns_ttl: int = _setting(
        300,
        module="coredns",
        ge=60,
        le=86400,
        description="TTL (seconds) of the zone's records and of negative answers.",
    )
    dns_nameservers: list[str] = _setting(
        [],
        module="coredns",
        description="Further NS names for the zone besides ns1.DOMAIN (secondaries you run elsewhere), "
        "as host names without a trailing dot.",
    )
    dns_caa_issuers: list[str] = _setting(
        ["letsencrypt.org"],
        module="coredns",
        min_length=1,
        description="CAA identities of the only CAs allowed to issue for DOMAIN and *.DOMAIN "
        "(Let's Encrypt: letsencrypt.org); violations are reported to admin_email (iodef).",
    )
    dns_records: list[DnsRecord] = _setting(
        [],
        module="coredns",
        description="Extra records: {'name': '@' or 'www', 'type': A|AAAA|CNAME|MX|TXT, 'value': ..., 'ttl': None}; "
        "e.g. MX '10 mail.example.com', TXT 'v=spf1 mx -all' at '@', TXT 'v=DMARC1; p=reject' at '_dmarc'.",
    )

    # -- nginx --------------------------------------------------------------------------------
    nginx_client_max_body_size_mb: int = _setting(
        64,
        module="nginx",
        ge=1,
        le=1024,
        description="Largest request body (MB) nginx passes to Ganymede; gateways push whole organisation "
        "snapshots (Ganymede's own JSON limit still applies behind it).",
    )
    nginx_auth_rate_per_minute: int = _setting(
        30,
        module="nginx",
        ge=1,
        le=6000,
        description="Requests per minute one client address may make to Ganymede's sign-in and OAuth paths "
        "(burst of a third of it); more get 429. The Docker bridge (gateways) and loopback are exempt.",
    )
    nginx_api_rate_per_second: int = _setting(
        20,
        module="nginx",
        ge=1,
        le=10000,
        description="Requests per second one client address may make to the rest of Ganymede's API "
        "(burst of three seconds' worth); more get 429. Static files have a much looser limit of their own.",
    )
    nginx_auth_paths: list[str] = _setting(
        [
            "/auth",
            "/login",
            "/logout",
            "/signup",
            "/register",
            "/password",
            "/oauth",
            "/github",
            "/gitlab",
            "/discord",
            "/linkedin",
        ],
        module="nginx",
        min_length=1,
        description="Path prefixes of Ganymede's sign-in, sign-up and OAuth endpoints, rate limited by "
        "nginx_auth_rate_per_minute.",
    )
    nginx_csp_connect_extra: list[str] = _setting(
        [],
        module="nginx",
        description="Further origins the frontend may connect to (Content-Security-Policy connect-src), "
        "e.g. a public OTLP endpoint 'https://otlp.example.com'; https://*.DOMAIN and wss://*.DOMAIN are always allowed.",
    )

    # -- letsencrypt --------------------------------------------------------------------------
    acme_directory: str = _setting(
        "letsencrypt",
        module="letsencrypt",
        description="ACME CA issuing DOMAIN and *.DOMAIN: 'letsencrypt' (production), 'letsencrypt-staging', "
        "or the https URL of any ACME directory. The account is admin_email.",
    )
    acme_directory_ca_file: str | None = _setting(
        None,
        module="letsencrypt",
        description="PEM file, on the machine that runs pyinfra, of the CA that signs the ACME directory's own "
        "HTTPS certificate, for a private ACME server (tests); None trusts the system's CAs.",
    )
    acme_dns_provider: Literal["coredns", "cloudflare"] = _setting(
        "coredns",
        module="letsencrypt",
        description="Where DNS-01 challenge records go: 'coredns' (this host is the domain's name server) or "
        "'cloudflare' (the zone is hosted at Cloudflare; needs HOLISTIX_DNS_API_TOKEN, Zone:DNS:Edit).",
    )
    acme_cloudflare_api_url: str | None = _setting(
        None,
        module="letsencrypt",
        description="Base URL of the Cloudflare API for the cloudflare provider; None is Cloudflare's own "
        "(set only to test against a stand-in).",
    )
    acme_cloudflare_propagation_seconds: int = _setting(
        10,
        module="letsencrypt",
        ge=1,
        le=600,
        description="Seconds certbot waits after writing a challenge record at Cloudflare before asking the CA.",
    )
    acme_organisations: list[uuid.UUID] = _setting(
        [],
        module="letsencrypt",
        description="Organisation ids whose *.org-<uuid>.DOMAIN (the names of their user containers) join the "
        "certificate; organisations added on the host with holistix-certificate are kept as well.",
    )

    # -- platform: the environment's port plan and pool (read by ganymede and gateway_pool) --
    ganymede_port: int = _setting(
        6010,
        module="platform",
        ge=1024,
        le=65535,
        description="Loopback TCP port Ganymede listens on (nginx proxies ganymede.DOMAIN to it).",
    )
    gateway_pool_size: int = _setting(
        4,
        module="platform",
        ge=1,
        le=100,
        description="Number of gateway containers kept ready for organisations.",
    )
    gateway_http_port_base: int = _setting(
        7100,
        module="platform",
        ge=1024,
        le=65535,
        description="First TCP port of the gateways' HTTP ports (one per gateway, on the Docker bridge address only).",
    )
    gateway_vpn_port_base: int = _setting(
        49100,
        module="platform",
        ge=1024,
        le=65535,
        description="First UDP port of the gateways' VPN ports (one per gateway, public).",
    )
    gateway_build_server_port: int = _setting(
        8090,
        module="platform",
        ge=1024,
        le=65535,
        description="TCP port, on the Docker bridge address, of the server gateways fetch their build from.",
    )

    # -- gateway_pool ---------------------------------------------------------------------------
    gateway_image: GatewayImage | None = _setting(
        None,
        module="gateway_pool",
        description="The gateway image as a `docker save` tarball: {'tag', 'source' (http(s) URL or a local file), "
        "'sha256'}. Required by deploys/gateway_pool.py; loaded with docker load once per checksum.",
        examples=[
            {"tag": "holistix-gateway:1.4.2", "source": "https://example.com/gateway-1.4.2.tar", "sha256": "<64 hex>"}
        ],
    )
    gateway_memory_max: str = _setting(
        "1G", module="gateway_pool", description="Memory limit of each gateway container (K, M or G)."
    )
    gateway_cpus: float = _setting(
        1.0, module="gateway_pool", gt=0, le=64, description="CPU limit of each gateway container (CPUs)."
    )
    gateway_pids_max: int = _setting(
        512, module="gateway_pool", ge=32, le=65536, description="Process limit of each gateway container."
    )

    # -- ganymede ------------------------------------------------------------------------------
    ganymede_release: GanymedeRelease | None = _setting(
        None,
        module="ganymede",
        description="The platform build to run: {'version', 'source' (http(s) URL or a local file), 'sha256'}. "
        "Required by deploys/ganymede.py; a checksum mismatch stops the run before anything changes.",
        examples=[{"version": "1.4.2", "source": "https://example.com/holistix-1.4.2.tar.gz", "sha256": "<64 hex>"}],
    )
    ganymede_rollback_to: str | None = _setting(
        None,
        module="ganymede",
        description="Make this kept release current instead of ganymede_release (health-gated like any switch), "
        "e.g. --data ganymede_rollback_to=1.4.1. None runs ganymede_release.",
    )
    ganymede_releases_kept: int = _setting(
        3,
        module="ganymede",
        ge=2,
        le=20,
        description="Releases kept under /opt/holistix/<env>/releases (the newest installed; the current one always).",
    )
    ganymede_health_path: str = _setting(
        "/",
        module="ganymede",
        description="Path asked on 127.0.0.1:ganymede_port after a restart; any answer below 500 means healthy "
        "(Ganymede has no health route: '/' answers 404 once it listens).",
    )
    ganymede_health_timeout_seconds: int = _setting(
        60,
        module="ganymede",
        ge=5,
        le=900,
        description="How long a restarted release has to answer before the switch is rolled back.",
    )
    ganymede_memory_max: str = _setting(
        "2G",
        module="ganymede",
        description="MemoryMax of the ganymede@<env> unit (K, M or G suffix).",
    )
    ganymede_cpu_quota_percent: int = _setting(
        200,
        module="ganymede",
        ge=10,
        le=6400,
        description="CPUQuota of the unit, in percent of one CPU.",
    )
    ganymede_tasks_max: int = _setting(
        512,
        module="ganymede",
        ge=32,
        le=65536,
        description="TasksMax of the unit (threads and processes).",
    )
    ganymede_egress_networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = _setting(
        [],
        module="ganymede",
        description="Networks Ganymede may talk to beyond the host itself and the Docker bridge (its unit's IP "
        "allow list): OAuth providers and the SMTP server. ['0.0.0.0/0', '::/0'] allows any.",
    )
    ganymede_extra_ca_file: str | None = _setting(
        None,
        module="ganymede",
        description="A PEM file on the machine that runs pyinfra whose CAs Ganymede also trusts "
        "(NODE_EXTRA_CA_CERTS), for a test ACME CA; certificate checks are never turned off.",
    )
    ganymede_oauth_client_ids: dict[Literal["github", "gitlab", "discord", "linkedin"], str] = _setting(
        {},
        module="ganymede",
        description="OAuth client IDs of the login providers; their secrets come from HOLISTIX_<PROVIDER>_CLIENT_SECRET. "
        "A provider left out gets the placeholder 'unconfigured' (its login does not work).",
    )
    ganymede_environment: dict[str, str] = _setting(
        {},
        module="ganymede",
        description="More plain variables for Ganymede (RATE_LIMIT_*, DEBUG_API...); the ones the module "
        "sets, secrets and NODE_TLS_REJECT_UNAUTHORIZED are refused.",
    )
    nodejs_source: Literal["nodesource", "distro"] = _setting(
        "nodesource",
        module="ganymede",
        description="Where Node.js comes from: NodeSource's apt repository (key pinned by fingerprint), or the "
        "distribution's nodejs (older than the platform's Node 24: for tests).",
    )
    nodejs_major: int = _setting(
        24,
        module="ganymede",
        ge=18,
        le=40,
        description="Node.js major version taken from NodeSource (node_<major>.x).",
    )
    smtp_host: str | None = _setting(
        None,
        module="core",
        description="SMTP server for platform mail and alerts (implicit TLS); its password comes from "
        "HOLISTIX_SMTP_PASSWORD. None leaves Ganymede's mail settings at the placeholder 'unconfigured'.",
    )
    smtp_port: int = _setting(465, module="core", ge=1, le=65535, description="SMTP port (implicit TLS).")
    smtp_user: str | None = _setting(None, module="core", description="Account name on the SMTP server (MAILING_USER).")

    # -- backups -------------------------------------------------------------------------------
    backup_keep_daily: int = _setting(
        7,
        module="backups",
        ge=1,
        le=366,
        description="Daily snapshots kept (restic forget --keep-daily); at least 1, so the newest is never pruned.",
    )
    backup_keep_weekly: int = _setting(
        4, module="backups", ge=0, le=520, description="Weekly snapshots kept (--keep-weekly)."
    )
    backup_keep_monthly: int = _setting(
        12, module="backups", ge=0, le=240, description="Monthly snapshots kept (--keep-monthly)."
    )
    backup_schedule: str = _setting(
        "*-*-* 02:00:00",
        module="backups",
        description="When the daily backup runs (systemd OnCalendar, host time; checked by systemd-analyze "
        "calendar on the host). A run missed while the host was off happens at boot.",
    )
    backup_randomized_delay_seconds: int = _setting(
        600,
        module="backups",
        ge=0,
        le=3600,
        description="Random delay added to each scheduled backup, check and restore test (RandomizedDelaySec).",
    )
    backup_check_schedule: str = _setting(
        "Sun *-*-* 03:30:00",
        module="backups",
        description="When restic check verifies the repositories (OnCalendar).",
    )
    backup_check_read_data_subset: str = _setting(
        "10%",
        module="backups",
        description="Share of the packs restic check reads and decrypts each time (--read-data-subset: '10%' or "
        "'n/t').",
    )
    backup_restore_test_schedule: str = _setting(
        "Sun *-*-* 04:30:00",
        module="backups",
        description="When the newest snapshot is restored into a scratch database and directory and compared "
        "with its manifest (OnCalendar).",
    )
    backup_offsite_repository: str | None = _setting(
        None,
        module="backups",
        description="A second restic repository that gets the same snapshots: 'sftp:user@host:/path' (key "
        "generated on the host; see backup_offsite_known_hosts) or 's3:https://host/bucket/path' (keys from "
        "HOLISTIX_BACKUP_S3_ACCESS_KEY_ID and HOLISTIX_BACKUP_S3_SECRET_ACCESS_KEY). None keeps only the local "
        "repository, which does not survive the loss of the host.",
        examples=["sftp:backup@backup.example.net:/srv/restic/holistix-prod"],
    )
    backup_offsite_sftp_port: int = _setting(
        22, module="backups", ge=1, le=65535, description="SSH port of the sftp off-site repository."
    )
    backup_offsite_known_hosts: list[str] = _setting(
        [],
        module="backups",
        description="known_hosts lines of the sftp off-site server (ssh-keyscan output you checked); required "
        "for an sftp repository: the host key is never taken on first use.",
    )

    # -- monitoring ----------------------------------------------------------------------------
    monitoring_retention_days: int = _setting(
        30, module="monitoring", ge=1, le=3650, description="Days of metrics Prometheus keeps."
    )
    monitoring_retention_size: str = _setting(
        "4G",
        module="monitoring",
        description="Disk Prometheus's metrics may take (K, M or G, binary: 4G is 4 GiB); the oldest blocks go first when it is reached.",
    )
    monitoring_scrape_interval_seconds: int = _setting(
        15,
        module="monitoring",
        ge=5,
        le=300,
        description="How often Prometheus scrapes every target and evaluates the alert rules.",
    )
    monitoring_probe_ca_file: str | None = _setting(
        None,
        module="monitoring",
        description="PEM file, on the machine that runs pyinfra, of the only CA the HTTPS probes then trust, "
        "instead of the system's (a private ACME CA in tests); None trusts the system's CAs, as production should.",
    )
    dashboards_public: bool = _setting(
        False,
        module="monitoring",
        description="Serve the dashboards' front door (Prometheus's consoles, alerts and queries; the logs' and "
        "traces' views) at https://<dashboards_subdomain>.DOMAIN as well, behind the generated password; false "
        "keeps it on 127.0.0.1:3000 only, for commands on the host (sshd allows no tunnel).",
    )
    dashboards_subdomain: str = _setting(
        "dashboards",
        module="monitoring",
        description="The front door's name under DOMAIN when dashboards_public is true (the wildcard "
        "certificate and DNS record cover it).",
    )
    logs_retention_days: int = _setting(
        14,
        module="monitoring",
        ge=1,
        le=3650,
        description="Days of logs (the journal's and nginx's) VictoriaLogs keeps; older days are dropped whole.",
    )
    logs_retention_size: str = _setting(
        "4G",
        module="monitoring",
        description="Disk VictoriaLogs may take (K, M or G, binary); the oldest days go first when it is reached.",
    )
    victorialogs_version: str = _setting(
        "1.52.1",
        module="monitoring",
        description="VictoriaLogs release whose victoria-logs, vlagent and vlogscli go to /usr/local/bin "
        "(changing it needs victorialogs_sha256 for its tarballs).",
    )
    victorialogs_download_url: str = _setting(
        "https://github.com/VictoriaMetrics/VictoriaLogs/releases/download/v{version}/{name}-linux-{arch}-v{version}.tar.gz",
        module="monitoring",
        description="Where VictoriaLogs's release tarballs are fetched; {name} (victoria-logs, vlutils), "
        "{version} and {arch} (amd64, arm64) are filled in.",
    )
    victorialogs_sha256: dict[str, str] = _setting(
        {},
        module="monitoring",
        description="sha256 of each release tarball the host needs, keyed by the tarball's file name, from the "
        "release's _checksums.txt files (a missing or wrong one stops the run before anything changes).",
        examples=[
            {
                "victoria-logs-linux-amd64-v1.52.1.tar.gz": "<64 hex digits>",
                "vlutils-linux-amd64-v1.52.1.tar.gz": "<64 hex digits>",
            }
        ],
    )
    traces_retention_hours: int = _setting(
        72,
        module="monitoring",
        ge=1,
        le=24 * 90,
        description="Hours Jaeger keeps a span (its Badger store's TTL); Badger has no size cap, so keep this short.",
    )
    jaeger_version: str = _setting(
        "2.13.0",
        module="monitoring",
        description="Jaeger (v2) release installed to /usr/local/bin/jaeger: the OTLP endpoint for Ganymede and "
        "the gateways, the traces' store and UI (changing it needs jaeger_sha256 for it).",
    )
    jaeger_download_url: str = _setting(
        "https://github.com/jaegertracing/jaeger/releases/download/v{version}/jaeger-{version}-linux-{arch}.tar.gz",
        module="monitoring",
        description="Where Jaeger's release tarball is fetched; {version} and {arch} (amd64, arm64) are filled in.",
    )
    jaeger_sha256: dict[Literal["amd64", "arm64"], str] = _setting(
        {},
        module="monitoring",
        description="sha256 of Jaeger's release tarball per architecture, from the release's "
        "jaeger-<version>.sha256sum.txt; the host's architecture must be listed.",
        examples=[{"amd64": "<64 hex digits from jaeger-2.13.0.sha256sum.txt>"}],
    )
    alert_email_to: list[str] = _setting(
        [],
        module="monitoring",
        description="Addresses Alertmanager mails alerts to, through smtp_host as smtp_user (password from "
        "HOLISTIX_SMTP_PASSWORD). Empty sends no mail.",
        examples=[["ops@example.com"]],
    )
    alert_email_from: str | None = _setting(
        None,
        module="monitoring",
        description="Sender of alert mail; None is alerts@DOMAIN.",
    )
    alert_webhook_url: str | None = _setting(
        None,
        module="monitoring",
        description="http(s) URL Alertmanager posts alerts to (its webhook JSON), e.g. a chat bridge or paging "
        "service; kept in alertmanager.yml (0640, root:prometheus). A URL that carries a token is a credential: "
        "read it from the environment in your inventory file rather than writing it there. With neither "
        "alert_email_to nor this, alerts are only seen in Alertmanager.",
    )
    alert_group_wait_seconds: int = _setting(
        30,
        module="monitoring",
        ge=0,
        le=600,
        description="How long Alertmanager gathers the first alerts of a group before it notifies.",
    )
    alert_group_interval_seconds: int = _setting(
        300,
        module="monitoring",
        ge=1,
        le=3600,
        description="How long Alertmanager waits before it tells about new or resolved alerts of a group it "
        "already notified.",
    )
    alert_repeat_hours: int = _setting(
        4, module="monitoring", ge=1, le=168, description="How often a still-firing alert is sent again."
    )
    alert_disk_used_percent: int = _setting(
        80, module="monitoring", ge=50, le=99, description="A filesystem fuller than this for 10 minutes alerts."
    )
    alert_memory_used_percent: int = _setting(
        90,
        module="monitoring",
        ge=50,
        le=99,
        description="Memory in use (not available to new work) above this for 10 minutes alerts.",
    )
    alert_api_error_percent: float = _setting(
        5.0,
        module="monitoring",
        gt=0,
        le=100,
        description="Share of Ganymede's responses through nginx that are 5xx, over 5 minutes, that alerts "
        "(with at least alert_api_min_requests_per_minute requests).",
    )
    alert_api_min_requests_per_minute: float = _setting(
        1.0,
        module="monitoring",
        ge=0,
        description="Below this request rate the API error alert stays quiet (two failed calls of five are "
        "not an outage).",
    )
    alert_certificate_days: int = _setting(
        30,
        module="monitoring",
        ge=1,
        le=89,
        description="A served certificate that has had fewer days left than this for a whole day alerts (certbot "
        "renews at 30 days left and tries twice a day).",
    )
    alert_backup_max_age_hours: int = _setting(
        26,
        module="monitoring",
        ge=2,
        le=24 * 14,
        description="A last successful backup older than this alerts (a daily backup plus its random delay).",
    )
    alert_restore_test_max_age_days: int = _setting(
        8,
        module="monitoring",
        ge=2,
        le=92,
        description="A last successful restore test older than this alerts (a weekly test plus a day).",
    )

    # -- field rules --------------------------------------------------------------------------
    @field_validator("domain")
    @classmethod
    def _domain_is_dns_name(cls, value: str) -> str:
        _check_dns_name(value)
        if len(value) > _DOMAIN_MAX:
            raise ValueError(
                f"is {len(value)} characters; at most {_DOMAIN_MAX} leave room for uc-<id>.org-<uuid>. labels"
            )
        return value

    @field_validator("environment")
    @classmethod
    def _environment_is_a_name(cls, value: str) -> str:
        if not _ENVIRONMENT.fullmatch(value):
            raise ValueError("must start with a lower case letter, then letters, digits or hyphens, at most 20")
        return value

    @field_validator("admin_email", "alert_email_from")
    @classmethod
    def _email_is_an_address(cls, value: str | None) -> str | None:
        return value if value is None else _check_email(value)

    @field_validator("alert_email_to")
    @classmethod
    def _recipients_are_addresses(cls, addresses: list[str]) -> list[str]:
        for position, address in enumerate(addresses):
            try:
                _check_email(address)
            except ValueError as error:
                raise ValueError(f"entry {position} ({address!r}): {error}") from None
        if len(set(addresses)) != len(addresses):
            raise ValueError("lists the same address twice")
        return addresses

    @field_validator("public_ipv4", "public_ipv6")
    @classmethod
    def _address_is_reachable(cls, value):
        return value if value is None else _check_reachable_address(value)

    @field_validator("deploy_user")
    @classmethod
    def _deploy_user_is_a_person(cls, value: str) -> str:
        if not _POSIX_USER.fullmatch(value):
            raise ValueError("must be a POSIX user name: lower case letter or _, then [a-z0-9_-], at most 32")
        if value in _RESERVED_USERS:
            raise ValueError("is a system or platform account; pick a name of its own, like 'deploy'")
        return value

    @field_validator("deploy_authorized_keys")
    @classmethod
    def _keys_are_public_keys(cls, keys: list[str]) -> list[str]:
        checked = []
        for position, key in enumerate(keys):
            try:
                checked.append(_check_public_key(key))
            except ValueError as error:
                raise ValueError(f"entry {position}: {error}") from None
        if len(set(checked)) != len(checked):
            raise ValueError("lists the same key twice")
        return checked

    @field_validator("base_extra_packages")
    @classmethod
    def _packages_are_names(cls, packages: list[str]) -> list[str]:
        bad = [name for name in packages if not _DEBIAN_PACKAGE.fullmatch(name)]
        if bad:
            raise ValueError(f"{bad[0]!r} is not a package name (lower case, digits, + . -; no versions)")
        return packages

    @field_validator("ssh_extra_options")
    @classmethod
    def _extra_sshd_options_do_not_weaken(cls, options: dict[str, str]) -> dict[str, str]:
        for keyword, value in options.items():
            if not re.fullmatch(r"[A-Za-z]+", keyword):
                raise ValueError(f"{keyword!r} is not an sshd_config keyword")
            if keyword.lower() in SSHD_MANAGED_KEYWORDS:
                raise ValueError(f"{keyword} is set by base's SSH hardening and cannot be overridden here")
            if "\n" in value or not value.strip():
                raise ValueError(f"{keyword}: the value must be one non-empty line")
        return options

    @field_validator("unattended_upgrades_reboot_time")
    @classmethod
    def _time_is_a_clock_time(cls, value: str) -> str:
        if not _CLOCK.fullmatch(value):
            raise ValueError("must be a 24-hour time HH:MM, like 04:00")
        return value

    @field_validator(
        "journald_max_use",
        "ganymede_memory_max",
        "gateway_memory_max",
        "monitoring_retention_size",
        "logs_retention_size",
    )
    @classmethod
    def _size_has_a_unit(cls, value: str) -> str:
        if not _SIZE.fullmatch(value):
            raise ValueError("must be a size with a unit K, M or G, like 500M")
        return value

    @field_validator("time_servers")
    @classmethod
    def _servers_are_names_or_addresses(cls, servers: list[str]) -> list[str]:
        for server in servers:
            try:
                ipaddress.ip_address(server)
            except ValueError:
                try:
                    _check_dns_name(server)
                except ValueError as error:
                    raise ValueError(f"{server!r} is neither an IP address nor a DNS name ({error})") from None
        return servers

    @field_validator("sysctl_overrides")
    @classmethod
    def _sysctl_keys_look_like_keys(cls, overrides: dict[str, str]) -> dict[str, str]:
        for key, value in overrides.items():
            if not re.fullmatch(r"[a-z0-9_]+(\.[a-z0-9_*-]+)+", key):
                raise ValueError(f"{key!r} is not a kernel parameter name like net.ipv4.tcp_syncookies")
            if not re.fullmatch(r"[\w .:-]+", str(value)):
                raise ValueError(f"{key}: value {value!r} has characters sysctl.d files cannot hold")
        return overrides

    @field_validator("postgres_overrides")
    @classmethod
    def _postgres_overrides_keep_security(cls, overrides: dict[str, str]) -> dict[str, str]:
        from holistix_deploy.postgres import MANAGED_KEYS

        for key, value in overrides.items():
            if not re.fullmatch(r"[a-z_][a-z0-9_.]*", key):
                raise ValueError(f"{key!r} is not a postgresql.conf parameter name")
            if key in MANAGED_KEYS or key.startswith(("ssl", "include")):
                raise ValueError(f"{key} is set by the postgres module for security and cannot be overridden")
            if "'" in str(value) or "\n" in str(value):
                raise ValueError(f"{key}: the value may not contain quotes or line breaks")
        return overrides

    @field_validator("postgres_database_dir")
    @classmethod
    def _database_dir_exists_here(cls, value: str | None) -> str | None:
        if value is None:
            return value
        from pathlib import Path

        root = Path(__file__).resolve().parent.parent
        path = Path(value) if Path(value).is_absolute() else root / value
        if not path.is_dir():
            raise ValueError("is not a directory on the machine that runs pyinfra")
        if not any((path / part).is_dir() for part in ("schema", "migrations", "procedures")):
            raise ValueError("has none of schema/, migrations/, procedures/: is it a platform build's database/?")
        return str(path)

    @field_validator("dashboards_subdomain")
    @classmethod
    def _subdomain_is_free(cls, value: str) -> str:
        if not _LABEL.fullmatch(value):
            raise ValueError("must be one DNS label: lower case letters, digits and inner hyphens, at most 63")
        if value in _PLATFORM_NAMES or value.startswith(_PLATFORM_PREFIXES):
            raise ValueError(
                "is a name the platform serves (ganymede, ns1, org-<uuid>, uc-<id>): choose another, like dashboards"
            )
        return value

    @field_validator("coredns_version", "jaeger_version", "victorialogs_version")
    @classmethod
    def _version_is_a_release(cls, value: str) -> str:
        if not re.fullmatch(r"\d+\.\d+\.\d+", value):
            raise ValueError("must be a release number like 1.2.3 (no leading v)")
        return value

    @field_validator("coredns_download_url", "jaeger_download_url")
    @classmethod
    def _url_is_a_template(cls, value: str) -> str:
        return _check_release_url(value, placeholders=("version", "arch"), required=("arch",))

    @field_validator("coredns_sha256", "jaeger_sha256")
    @classmethod
    def _checksums_are_sha256(cls, value: dict[str, str]) -> dict[str, str]:
        for arch, digest in value.items():
            if not re.fullmatch(r"[0-9a-f]{64}", digest):
                raise ValueError(f"{arch}: {digest!r} is not a sha256 (64 lower case hex digits)")
        return value

    @field_validator("victorialogs_download_url")
    @classmethod
    def _victorialogs_url_is_a_template(cls, value: str) -> str:
        return _check_release_url(value, placeholders=("name", "version", "arch"), required=("name", "arch"))

    @field_validator("victorialogs_sha256")
    @classmethod
    def _victorialogs_checksums(cls, value: dict[str, str]) -> dict[str, str]:
        names = "|".join(VICTORIALOGS_TARBALLS)
        for tarball, digest in value.items():
            if not re.fullmatch(rf"({names})-linux-(amd64|arm64)-v\d+\.\d+\.\d+\.tar\.gz", tarball):
                raise ValueError(
                    f"{tarball!r} is not a release tarball's name, like victoria-logs-linux-amd64-v1.52.1.tar.gz"
                )
            if not re.fullmatch(r"[0-9a-f]{64}", digest):
                raise ValueError(f"{tarball}: {digest!r} is not a sha256 (64 lower case hex digits)")
        return value

    @field_validator("dns_upstreams")
    @classmethod
    def _upstreams_are_elsewhere(cls, upstreams: list) -> list:
        for address in upstreams:
            if address.is_loopback or address.is_unspecified or address.is_multicast:
                raise ValueError(
                    f"{address} would send CoreDNS's queries back to itself or nowhere; name real resolvers"
                )
        if len(set(upstreams)) != len(upstreams):
            raise ValueError("lists the same resolver twice")
        return upstreams

    @field_validator("dns_nameservers")
    @classmethod
    def _nameservers_are_names(cls, names: list[str]) -> list[str]:
        for name in names:
            try:
                _check_dns_name(name)
            except ValueError as error:
                raise ValueError(f"{name!r} {error}") from None
        return names

    @field_validator("dns_caa_issuers")
    @classmethod
    def _issuers_are_domains(cls, issuers: list[str]) -> list[str]:
        for issuer in issuers:
            try:
                _check_dns_name(issuer)
            except ValueError as error:
                raise ValueError(
                    f"{issuer!r} is not a CA's CAA identity (a domain like letsencrypt.org): {error}"
                ) from None
        return issuers

    @field_validator("dns_records")
    @classmethod
    def _records_do_not_conflict(cls, records: list[DnsRecord]) -> list[DnsRecord]:
        names = {}
        for record in records:
            names.setdefault(record.name, []).append(record.type)
        for name, types in names.items():
            if "CNAME" in types and len(types) > 1:
                raise ValueError(f"{name!r} has a CNAME and other records; a CNAME must be alone at its name")
        return records

    @field_validator("nginx_auth_paths")
    @classmethod
    def _paths_are_plain_prefixes(cls, paths: list[str]) -> list[str]:
        for path in paths:
            if not re.fullmatch(r"/[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*", path):
                raise ValueError(f"{path!r} is not a path prefix like /auth (letters, digits, ._- between slashes)")
        return paths

    @field_validator("nginx_csp_connect_extra")
    @classmethod
    def _origins_are_origins(cls, origins: list[str]) -> list[str]:
        for origin in origins:
            if not re.fullmatch(r"(https|wss)://(\*\.)?[a-z0-9.-]+(:\d{1,5})?", origin):
                raise ValueError(
                    f"{origin!r} is not an https:// or wss:// origin (scheme, host, optional port; no path)"
                )
        return origins

    @field_validator("acme_directory")
    @classmethod
    def _directory_is_known_or_a_url(cls, value: str) -> str:
        if value not in ACME_DIRECTORIES and not re.fullmatch(r"https://[^\s'\"\\]+", value):
            raise ValueError("must be 'letsencrypt', 'letsencrypt-staging' or an https:// URL of an ACME directory")
        return value

    @field_validator("acme_directory_ca_file", "ganymede_extra_ca_file", "monitoring_probe_ca_file")
    @classmethod
    def _ca_file_exists_here(cls, value: str | None) -> str | None:
        from pathlib import Path

        if value is not None and "-----BEGIN CERTIFICATE-----" not in (
            Path(value).read_text() if Path(value).is_file() else ""
        ):
            raise ValueError("is not a PEM certificate file on the machine that runs pyinfra")
        return value

    @field_validator("acme_cloudflare_api_url", "alert_webhook_url")
    @classmethod
    def _api_url_is_a_url(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"https?://[A-Za-z0-9.\[\]:-]+(/[^\s'\"\\]*)?", value):
            raise ValueError("must be an http(s) URL like https://hooks.example.com/alerts")
        return value

    @field_validator("acme_organisations")
    @classmethod
    def _organisations_fit_one_certificate(cls, organisations: list) -> list:
        if len(set(organisations)) != len(organisations):
            raise ValueError("lists the same organisation twice")
        if len(organisations) > ACME_MAX_NAMES - 2:
            raise ValueError(
                f"lists {len(organisations)} organisations; one certificate holds {ACME_MAX_NAMES} names, "
                f"DOMAIN and *.DOMAIN take 2, so at most {ACME_MAX_NAMES - 2}"
            )
        return organisations

    @model_validator(mode="after")
    def _app_connections_fit(self) -> Settings:
        if self.postgres_app_connection_limit > self.postgres_max_connections - 10:
            raise ValueError(
                f"postgres_app_connection_limit = {self.postgres_app_connection_limit}: must stay at least 10 under "
                f"postgres_max_connections ({self.postgres_max_connections}), for superusers, backups and monitoring"
            )
        return self

    @model_validator(mode="after")
    def _ports_do_not_clash(self) -> Settings:
        tcp = {22: "ssh", 53: "dns", 80: "http", 443: "https", 5432: "postgresql"}
        tcp |= {port: f"coredns {what}" for what, port in COREDNS_LOOPBACK_PORTS.items()}
        tcp |= {port: f"monitoring's {what}" for what, port in MONITORING_LOOPBACK_PORTS.items()}
        wanted = [("ganymede_port", self.ganymede_port), ("gateway_build_server_port", self.gateway_build_server_port)]
        wanted += [
            (f"gateway_http_port_base+{i}", self.gateway_http_port_base + i) for i in range(self.gateway_pool_size)
        ]
        for key, port in wanted:
            if port > 65535:
                raise ValueError(f"{key} = {port}: the gateway range runs past port 65535; lower the base or the pool")
            if port in tcp:
                raise ValueError(
                    f"{key} = {port} clashes with {tcp[port]} (TCP port {port}); every TCP port must differ"
                )
            tcp[port] = key
        last_vpn = self.gateway_vpn_port_base + self.gateway_pool_size - 1
        if last_vpn > 65535:
            raise ValueError(f"gateway_vpn_port_base = {self.gateway_vpn_port_base}: the VPN range runs past 65535")
        if self.gateway_vpn_port_base <= 53 <= last_vpn:
            raise ValueError("gateway_vpn_port_base: the VPN range covers UDP port 53 (dns)")
        return self

    @field_validator("ganymede_rollback_to", mode="before")
    @classmethod
    def _rollback_from_the_command_line(cls, value):
        return _version_text(value)

    @field_validator("ganymede_rollback_to")
    @classmethod
    def _rollback_is_a_version(cls, value: str | None) -> str | None:
        return None if value is None else _check_release_version(value)

    @field_validator("ganymede_health_path")
    @classmethod
    def _health_path_is_a_path(cls, value: str) -> str:
        if not re.fullmatch(r"/[A-Za-z0-9._~/-]{0,200}", value):
            raise ValueError("must be a URL path starting with / (letters, digits and ._~/- only)")
        return value

    @field_validator("ganymede_oauth_client_ids")
    @classmethod
    def _client_ids_are_real(cls, ids: dict[str, str]) -> dict[str, str]:
        from holistix_deploy.secrets import placeholder_rule

        for provider, client_id in ids.items():
            if not re.fullmatch(r"[\x21-\x7e]{1,200}", client_id):
                raise ValueError(f"{provider}: {client_id!r} is not a client ID (printable, no spaces)")
            rule = placeholder_rule(client_id) if len(client_id) >= 8 else None
            if rule and "placeholder" in rule:
                raise ValueError(f"{provider}: {client_id!r} {rule}; leave the provider out instead")
        return ids

    @field_validator("ganymede_environment")
    @classmethod
    def _extra_variables_are_plain(cls, variables: dict[str, str]) -> dict[str, str]:
        from holistix_deploy.ganymede import MANAGED_VARIABLES

        for name, value in variables.items():
            if not _ENVIRONMENT_NAME.fullmatch(name):
                raise ValueError(f"{name!r} is not an environment variable name (upper case, digits, _)")
            if name == "NODE_TLS_REJECT_UNAUTHORIZED":
                raise ValueError(
                    "NODE_TLS_REJECT_UNAUTHORIZED is never set: give a test CA in ganymede_extra_ca_file instead"
                )
            if name in MANAGED_VARIABLES:
                raise ValueError(f"{name} is set by the ganymede module from {MANAGED_VARIABLES[name]}")
            if _SECRET_WORDS.search(name) or name.endswith("_KEY"):
                raise ValueError(
                    f"{name} looks like a secret: secrets come from HOLISTIX_* variables, never inventory data"
                )
            if not re.fullmatch(r"[\x20-\x7e]{0,2000}", value):
                raise ValueError(f"{name}: value must be one line of printable ASCII")
        return variables

    @field_validator("backup_schedule", "backup_check_schedule", "backup_restore_test_schedule")
    @classmethod
    def _schedule_is_a_calendar_expression(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9*:,./~ -]{1,80}", value):
            raise ValueError("must be a systemd OnCalendar expression, like '*-*-* 02:00:00' or 'Sun *-*-* 04:00:00'")
        return value

    @field_validator("backup_check_read_data_subset")
    @classmethod
    def _subset_is_restics(cls, value: str) -> str:
        percent = re.fullmatch(r"(\d{1,3}(?:\.\d{1,2})?)%", value)
        fraction = re.fullmatch(r"([1-9]\d{0,3})/([1-9]\d{0,3})", value)
        if percent and 0 < float(percent[1]) <= 100:
            return value
        if fraction and int(fraction[1]) <= int(fraction[2]):
            return value
        raise ValueError("must be a share of the packs restic check reads: 'x%' (0 < x <= 100) or 'n/t' (n <= t)")

    @field_validator("backup_offsite_repository")
    @classmethod
    def _offsite_is_sftp_or_s3(cls, value: str | None) -> str | None:
        if value is None:
            return value
        sftp = re.fullmatch(
            r"sftp:([a-z_][a-z0-9_-]{0,31})@([A-Za-z0-9.-]+|\[[0-9a-fA-F:]+\]):(/[A-Za-z0-9._/-]+)", value
        )
        s3 = re.fullmatch(r"s3:https://[A-Za-z0-9.-]+(:\d{1,5})?/[a-z0-9][a-z0-9.-]{2,62}(/[A-Za-z0-9._/-]+)?", value)
        if not (sftp or s3):
            raise ValueError(
                "must be 'sftp:user@host:/absolute/path' or 's3:https://host/bucket[/path]' (no credentials in it: "
                "an S3 key comes from HOLISTIX_BACKUP_S3_*, an sftp key is generated on the host)"
            )
        return value

    @field_validator("backup_offsite_known_hosts")
    @classmethod
    def _known_hosts_are_lines(cls, value: list[str]) -> list[str]:
        for line in value:
            if not re.fullmatch(
                r"\S+ (ssh-ed25519|ecdsa-sha2-nistp(256|384|521)|ssh-rsa) [A-Za-z0-9+/=]{40,}( .*)?", line
            ):
                raise ValueError(f"{line[:60]!r}: not a known_hosts line ('host key-type base64-key')")
        return value

    @model_validator(mode="after")
    def _sftp_offsite_has_a_known_host_key(self) -> Settings:
        if (self.backup_offsite_repository or "").startswith("sftp:") and not self.backup_offsite_known_hosts:
            raise ValueError(
                f"backup_offsite_known_hosts = []: the sftp repository {self.backup_offsite_repository!r} needs the "
                "server's host key (ssh-keyscan it, check its fingerprint, list the lines here)"
            )
        return self

    @field_validator("smtp_host")
    @classmethod
    def _smtp_host_is_a_host(cls, value: str | None) -> str | None:
        if value is None:
            return value
        try:
            ipaddress.ip_address(value)
            return value
        except ValueError:
            return _check_dns_name(value)

    @field_validator("smtp_user")
    @classmethod
    def _smtp_user_is_printable(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[\x21-\x7e]{1,200}", value):
            raise ValueError("must be printable ASCII without spaces")
        return value

    @model_validator(mode="after")
    def _alert_mail_has_a_server(self) -> Settings:
        if self.alert_email_to and not (self.smtp_host and self.smtp_user):
            raise ValueError(
                f"alert_email_to = {self.alert_email_to!r}: alert mail goes through smtp_host as smtp_user; set both "
                "(and HOLISTIX_SMTP_PASSWORD), or leave alert_email_to empty"
            )
        return self

    @model_validator(mode="after")
    def _ganymede_can_reach_its_providers(self) -> Settings:
        wanted = [f"the {p} login (ganymede_oauth_client_ids)" for p in self.ganymede_oauth_client_ids]
        wanted += ["mail (smtp_host)"] if self.smtp_host else []
        if wanted and not self.ganymede_egress_networks:
            raise ValueError(
                f"ganymede_egress_networks = []: Ganymede needs to reach {', '.join(wanted)}; list those networks "
                "(or ['0.0.0.0/0', '::/0'] to allow any), or its unit's IP allow list blocks them"
            )
        return self

    def architecture_checksum(self, key: str, arch: str, host_name: str, copy_from: str) -> str:
        """The release checksum the setting ``key`` ({arch: sha256}) holds for ``arch``; when it has
        none the run stops before anything changes, saying where to copy it from."""
        checksums = getattr(self, key)
        if arch not in checksums:
            raise SettingsError(
                host_name,
                [
                    f"{key} = {dict(checksums)!r}: has no checksum for this host's architecture {arch}; "
                    f"copy it from {copy_from}"
                ],
            )
        return checksums[arch]

    def missing_for(self, module: str) -> list[str]:
        """Problems that stop ``module`` before it changes anything (keys it cannot run without)."""
        if module == "gateway_pool" and self.gateway_image is None:
            return [
                "gateway_image: required by the gateway_pool module: {'tag', 'source', 'sha256'} of the gateway "
                "image's docker save tarball (README, 'Module: gateway_pool')"
            ]
        if module == "ganymede" and self.ganymede_release is None:
            return [
                "ganymede_release: required by the ganymede module: {'version', 'source', 'sha256'} of a platform "
                "build (README, 'Releases')"
            ]
        return []

    # -- derived names (one place, so every module agrees) -----------------------------------
    @property
    def database_name(self) -> str:
        return f"ganymede_{self.environment.replace('-', '_')}"

    @property
    def database_role(self) -> str:
        return f"ganymede_app_{self.environment.replace('-', '_')}"

    @property
    def secrets_dir(self) -> str:
        return f"/etc/holistix/{self.environment}"

    @property
    def acme_directory_url(self) -> str:
        return ACME_DIRECTORIES.get(self.acme_directory, self.acme_directory)

    @property
    def release_dir(self) -> str:
        """The current release of the platform (a symlink the ganymede module switches)."""
        return f"/opt/holistix/{self.environment}/current"

    @property
    def ganymede_unit(self) -> str:
        return f"ganymede@{self.environment}.service"

    @property
    def org_data_dir(self) -> str:
        """Where Ganymede's organisation data really lives (mapped onto /root/.local-dev/<env>/org-data)."""
        return f"/var/lib/holistix/{self.environment}/org-data"

    @property
    def backup_local_repository(self) -> str:
        return f"/var/backups/holistix/{self.environment}"

    @property
    def frontend_root(self) -> str:
        """The frontend build of the current release, as a platform build lays it out."""
        return f"{self.release_dir}/packages/app-frontend/dist"

    @property
    def nginx_gateways_dir(self) -> str:
        """Where Ganymede writes its per-organisation server blocks (NGINX_GATEWAYS_DIR)."""
        return f"/etc/nginx/holistix/{self.environment}/gateways.d"

    @property
    def tls_dir(self) -> str:
        """fullchain.pem and privkey.pem for DOMAIN and *.DOMAIN: a placeholder until the
        letsencrypt module points them at its certificate (NGINX_SSL_CERT/KEY too)."""
        return f"/etc/ssl/holistix/{self.domain}"


# ------------------------------------------------------------------------------------------
# Reading a host's data


class SettingsError(PyinfraError):
    """Raised before any operation when a host's data is invalid: one line per problem."""

    def __init__(self, host_name: str, problems: list[str]):
        self.problems = problems
        lines = "\n".join(f"  - {problem}" for problem in problems)
        super().__init__(f"invalid settings for host {host_name} ({len(problems)} problem(s)):\n{lines}")


def _pyinfra_keys() -> frozenset[str]:
    """Data keys that belong to pyinfra itself (connector options), not to this schema."""
    from pyinfra.api.connectors import get_all_connectors

    keys: set[str] = set()
    for connector in get_all_connectors().values():
        keys.update(getattr(connector, "data_meta", {}) or {})
    return frozenset(keys)


def _describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


_SECRET_WORDS = re.compile(r"pass|pasw|pwd|secret|token|private|credential|api_?key", re.I)


def _unknown_key_problem(key: str, value: Any) -> str:
    known = list(Settings.model_fields)
    if _SECRET_WORDS.search(key):
        value = "<hidden: the key looks like a secret>"
    for secret in OPERATOR_SECRETS:
        if key in (secret.name, secret.env_var.lower()):
            return (
                f"{key}: secrets are never inventory data (they would land in git and in pyinfra's "
                f"output); export {secret.env_var} on the machine that runs pyinfra instead"
            )
    secret_names = {secret.name: secret for secret in OPERATOR_SECRETS}
    guess = difflib.get_close_matches(key, known + list(secret_names), n=1, cutoff=0.6)
    if guess and guess[0] in secret_names:
        hint = f"; if this is the {guess[0]}, export {secret_names[guess[0]].env_var} instead (never inventory data)"
    else:
        hint = f"; did you mean {guess[0]!r}?" if guess else ""
    shown = value if isinstance(value, str) and value.startswith("<hidden") else _describe(value)
    return f"{key} = {shown}: unknown setting{hint} (the README's Settings table lists every key)"


def _value_at(value: Any, path: list[str]) -> Any:
    """The offending value inside a list or dict setting, as far as the error's path leads."""
    for part in path:
        try:
            value = value[int(part)] if isinstance(value, list) else value[part]
        except (KeyError, IndexError, ValueError, TypeError):
            break
    return value


def _is_type_tag(part: str) -> bool:
    # pydantic names each branch of a union (e.g. "lax-or-strict[...]") in the error location
    return any(mark in part for mark in "[(") or part in ("str", "int", "literal['any']")


def _format_errors(error: ValidationError, data: dict[str, Any]) -> list[str]:
    problems: dict[str, list[str]] = {}
    for item in error.errors():
        location = [str(part) for part in item["loc"] if not _is_type_tag(str(part))]
        key = location[0] if location else ""
        path = key + "".join(f"[{part}]" for part in location[1:])
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "missing" and len(location) == 1:
            line = f"{key}: required setting is missing ({Settings.model_fields[key].description})"
        elif item["type"] == "missing":
            line = f"{path}: {message}"
        elif not key:  # model-level rule (message starts with the key it names)
            line = message
        else:
            line = f"{path} = {_describe(_value_at(data.get(key), location[1:]))}: {message}"
        head, _, rule = line.rpartition(": ") if key and item["type"] != "missing" else (line, "", "")
        # one line per offending value: a union's branches become "rule A, or rule B"
        problems.setdefault(head if rule else line, [])
        if rule and rule not in problems[head]:
            problems[head].append(rule)
    return [f"{head}: {', or '.join(rules)}" if rules else head for head, rules in problems.items()]


def validate_data(data: dict[str, Any], environ: dict[str, str] | None = None, host_name: str = "?") -> Settings:
    """Validate raw host data (and operator secrets in the environment); raise SettingsError."""
    pyinfra_keys = _pyinfra_keys()
    ours = {k: v for k, v in data.items() if not k.startswith("_") and k not in pyinfra_keys}
    problems = [_unknown_key_problem(k, v) for k, v in ours.items() if k not in Settings.model_fields]
    settings = None
    try:
        settings = Settings(**{k: v for k, v in ours.items() if k in Settings.model_fields})
    except ValidationError as error:
        problems += _format_errors(error, ours)
    try:
        read_operator_secrets(environ)
    except OperatorSecretError as error:
        problems += error.problems
    if problems or settings is None:
        raise SettingsError(host_name, problems)
    return settings


def inventory_hosts(inventory: str) -> list[tuple[str, dict[str, Any]]]:
    """(name, data) of every host of a pyinfra inventory file, with the data merged the way
    pyinfra merges it (group_data included): what the tests compare a host with."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    listing = subprocess.run(
        [sys.executable, "-m", "pyinfra", inventory, "debug-inventory", "--json"],
        cwd=Path(__file__).resolve().parent.parent,
        capture_output=True,
        text=True,
        check=True,
    )
    return [(entry["name"], entry["data"]) for entry in json.loads(listing.stdout)]


_VALIDATED: dict[str, Settings] = {}


def load_settings(host) -> Settings:
    """The validated settings of a pyinfra host; call at the top of every deploy file.

    Raises SettingsError (pyinfra then exits non-zero before any operation ran).
    """
    if host.name not in _VALIDATED:
        data = host.data.dict()
        settings = validate_data(data, host_name=host.name)
        problem = _own_key_problem(data, settings)
        if problem:
            raise SettingsError(host.name, [problem])
        _VALIDATED[host.name] = settings
    return _VALIDATED[host.name]


def _own_key_problem(data: dict[str, Any], settings: Settings) -> str | None:
    """A run that logs in as the deploy user must not remove the key it logs in with."""
    from pathlib import Path

    key = data.get("ssh_key")
    if data.get("ssh_user") != settings.deploy_user or not key:
        return None
    public = Path(str(key)).expanduser().with_name(Path(str(key)).name + ".pub")
    if not public.is_file():
        return None  # the key's public half is not beside it: nothing to compare
    running = public.read_text().split()[:2]
    if any(line.split()[:2] == running for line in settings.deploy_authorized_keys):
        return None
    return (
        f"deploy_authorized_keys: does not list the key this run logs in with ({public}); "
        f"the run would remove it from {settings.deploy_user} and lock pyinfra out"
    )
