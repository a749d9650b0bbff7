"""Which secrets exist, where they come from, and the rules they must follow.

Two kinds, both stored on the host under /etc/holistix/<env>/ (directory 0700, files 0600 root):

* generated secrets: made on the host on the first run by a command whose output goes
  straight into the file; never regenerated, never read back by pyinfra;
* operator secrets: given through environment variables on the machine that runs pyinfra,
  sent to the host over the SSH channel's stdin (never in a command line, a fact argument
  or an operation name) and replaced only when the operator gives a different value.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass


@dataclass(frozen=True)
class OperatorSecret:
    name: str  # file name under /etc/holistix/<env>/
    env_var: str
    used_by: str
    description: str


@dataclass(frozen=True)
class GeneratedSecret:
    name: str  # file name under /etc/holistix/<env>/
    command: str  # prints the secret on stdout; runs on the host (paths relative to the secrets dir)
    description: str


OPERATOR_SECRETS: tuple[OperatorSecret, ...] = (
    OperatorSecret(
        "dns_api_token",
        "HOLISTIX_DNS_API_TOKEN",
        "letsencrypt",
        "API token of the DNS provider (Cloudflare) for DNS-01 challenges.",
    ),
    OperatorSecret(
        "smtp_password",
        "HOLISTIX_SMTP_PASSWORD",
        "ganymede, monitoring",
        "Password of the SMTP account that sends platform mail and alerts.",
    ),
    OperatorSecret(
        "github_client_secret",
        "HOLISTIX_GITHUB_CLIENT_SECRET",
        "ganymede",
        "OAuth client secret of the GitHub login application.",
    ),
    OperatorSecret(
        "gitlab_client_secret",
        "HOLISTIX_GITLAB_CLIENT_SECRET",
        "ganymede",
        "OAuth client secret of the GitLab login application.",
    ),
    OperatorSecret(
        "discord_client_secret",
        "HOLISTIX_DISCORD_CLIENT_SECRET",
        "ganymede",
        "OAuth client secret of the Discord login application.",
    ),
    OperatorSecret(
        "linkedin_client_secret",
        "HOLISTIX_LINKEDIN_CLIENT_SECRET",
        "ganymede",
        "OAuth client secret of the LinkedIn login application.",
    ),
    OperatorSecret(
        "backup_s3_access_key_id",
        "HOLISTIX_BACKUP_S3_ACCESS_KEY_ID",
        "backups",
        "Access key ID of the S3 off-site backup repository (backup_offsite_repository = 's3:...').",
    ),
    OperatorSecret(
        "backup_s3_secret_access_key",
        "HOLISTIX_BACKUP_S3_SECRET_ACCESS_KEY",
        "backups",
        "Secret access key of the S3 off-site backup repository.",
    ),
)

GENERATED_SECRETS: tuple[GeneratedSecret, ...] = (
    GeneratedSecret(
        "session_cookie_key",
        "openssl rand -hex 32",
        "Signs Ganymede's session cookies and magic links (SESSION_COOKIE_KEY).",
    ),
    GeneratedSecret(
        "credentials_encryption_key",
        "openssl rand -hex 32",
        "Encrypts stored user credentials (CREDENTIALS_ENCRYPTION_KEY); losing it loses them.",
    ),
    GeneratedSecret(
        "jwt_private_key.pem",
        "openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:4096",
        "RS256 key that signs Ganymede's JWTs (gateway tokens live a year: keep it stable).",
    ),
    GeneratedSecret(
        "jwt_public_key.pem",
        "openssl pkey -in jwt_private_key.pem -pubout",
        "Public half of the JWT key (not secret, kept beside it).",
    ),
)

SECRET_MIN_LENGTH = 8

# Values that tutorials, .env.example files and the platform's own dev scripts ship with.
_PLACEHOLDERS = frozenset(
    {
        "changeme",
        "change-me",
        "change_me",
        "password",
        "secret",
        "placeholder",
        "example",
        "todo",
        "tbd",
        "test",
        "dummy",
        "default",
        "none",
        "null",
        "devpassword",
        "test-encryption-key-not-for-production-use",
        "your-secret-here",
        "your_token_here",
    }
)
_PLACEHOLDER_SHAPES = (
    re.compile(r"^x{3,}$", re.I),
    re.compile(r"^<.*>$"),
    re.compile(r"^\$\{.*\}$"),
    re.compile(r"^(.)\1+$"),
)


class OperatorSecretError(Exception):
    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("; ".join(problems))


def placeholder_rule(value: str) -> str | None:
    """Why a secret value is unusable, or None. Never includes the value itself."""
    if len(value) < SECRET_MIN_LENGTH:
        return f"is {len(value)} characters; at least {SECRET_MIN_LENGTH} are required"
    if value.strip() != value:
        return "starts or ends with white space (a copy-paste accident?)"
    if value.lower() in _PLACEHOLDERS or any(shape.match(value) for shape in _PLACEHOLDER_SHAPES):
        return "looks like a placeholder, not a real secret"
    return None


def read_operator_secrets(environ: dict[str, str] | None = None) -> dict[str, str]:
    """Operator secrets that are set, by file name. Unset or empty variables are skipped."""
    environ = os.environ if environ is None else environ
    found, problems = {}, []
    for secret in OPERATOR_SECRETS:
        value = environ.get(secret.env_var, "")
        if not value:
            continue
        rule = placeholder_rule(value)
        if rule:
            problems.append(f"{secret.env_var} = <hidden, {len(value)} characters>: {rule}")
        else:
            found[secret.name] = value
    if problems:
        raise OperatorSecretError(problems)
    return found
