"""TLS policy shared by every TLS server the project configures (PostgreSQL, nginx)."""

from __future__ import annotations

# Mozilla Server Side TLS "intermediate" (guidelines 6.0), TLS 1.2 suites; TLS 1.3 suites are
# OpenSSL's defaults, which are the same three Mozilla lists.
MOZILLA_INTERMEDIATE_CIPHERS = (
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
    "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"
)
MOZILLA_INTERMEDIATE_CURVES = "X25519:prime256v1:secp384r1"

# issues certificates signed by a CA made on the host (files/tls/host_certificates.sh)
CERTIFICATE_HELPER = "/usr/local/lib/holistix/host-certificates"
