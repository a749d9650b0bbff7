"""Fixtures for tests that need no host: valid settings data and SSH public keys."""

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa


def public_key_line(private_key, comment: str) -> str:
    line = private_key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return f"{line.decode()} {comment}"


@pytest.fixture(scope="session")
def ed25519_key_line() -> str:
    return public_key_line(ed25519.Ed25519PrivateKey.generate(), "ops@example.com")


@pytest.fixture(scope="session")
def rsa_2048_key_line() -> str:
    return public_key_line(rsa.generate_private_key(public_exponent=65537, key_size=2048), "old@example.com")


@pytest.fixture(scope="session")
def rsa_3072_key_line() -> str:
    return public_key_line(rsa.generate_private_key(public_exponent=65537, key_size=3072), "ok@example.com")


@pytest.fixture
def valid_data(ed25519_key_line) -> dict:
    """The smallest valid inventory data (documentation addresses only)."""
    return {
        "domain": "app.example.com",
        "admin_email": "ops@example.com",
        "public_ipv4": "203.0.113.10",
        "deploy_authorized_keys": [ed25519_key_line],
        # connector keys and global arguments belong to pyinfra and must be let through
        "ssh_user": "deploy",
        "ssh_hostname": "203.0.113.10",
        "_sudo": True,
    }
