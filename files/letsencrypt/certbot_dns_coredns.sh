#!/bin/sh
# certbot-dns-coredns auth|cleanup: certbot's manual DNS-01 hooks for this host's CoreDNS.
# certbot sets CERTBOT_DOMAIN (DOMAIN for both DOMAIN and *.DOMAIN) and CERTBOT_VALIDATION.
# holistix-acme-dns (coredns module) returns only once CoreDNS serves the change.
set -eu
case "${1:-}" in
  auth) exec /usr/local/sbin/holistix-acme-dns add "_acme-challenge.$CERTBOT_DOMAIN" "$CERTBOT_VALIDATION" ;;
  cleanup) exec /usr/local/sbin/holistix-acme-dns remove "_acme-challenge.$CERTBOT_DOMAIN" "$CERTBOT_VALIDATION" ;;
  *) echo "usage: certbot-dns-coredns auth|cleanup" >&2; exit 2 ;;
esac
