#!/bin/sh
# holistix-pg-certificates CLUSTER_DIR: the PostgreSQL cluster's loopback TLS, made on the host.
#
# Installed by holistix-deploy's postgres module. A private CA (10 years; its key never leaves
# this directory, root only) signs a server certificate for localhost, 127.0.0.1 and ::1 that
# lives 365 days (Mozilla's limit is 366) and is re-issued when it has under 30 days left.
# Clients can verify it: sslmode=verify-full sslrootcert=CLUSTER_DIR/holistix-ca.crt.
set -eu
dir=$1
umask 077
if [ ! -s "$dir/holistix-ca.key" ]; then
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:prime256v1 -out "$dir/holistix-ca.key.new"
  mv "$dir/holistix-ca.key.new" "$dir/holistix-ca.key"
  rm -f "$dir/holistix-ca.crt"
fi
if ! openssl x509 -checkend 31536000 -noout -in "$dir/holistix-ca.crt" >/dev/null 2>&1; then
  openssl req -new -x509 -key "$dir/holistix-ca.key" -days 3650 -subj "/CN=PostgreSQL loopback CA ($(hostname))" \
    -addext "basicConstraints=critical,CA:TRUE,pathlen:0" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -out "$dir/holistix-ca.crt.new"
  chmod 0644 "$dir/holistix-ca.crt.new"
  mv "$dir/holistix-ca.crt.new" "$dir/holistix-ca.crt"
  rm -f "$dir/holistix-server.crt"   # signed by the old CA
fi
if ! openssl x509 -checkend 2592000 -noout -in "$dir/holistix-server.crt" >/dev/null 2>&1; then
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1\n' > "$work/ext"
  openssl req -new -key "$dir/holistix-server.key" -subj /CN=localhost -out "$work/csr"
  openssl x509 -req -in "$work/csr" -CA "$dir/holistix-ca.crt" -CAkey "$dir/holistix-ca.key" -days 365 \
    -set_serial "0x7$(openssl rand -hex 15)" -extfile "$work/ext" -out "$dir/holistix-server.crt.new" 2>/dev/null
  chmod 0644 "$dir/holistix-server.crt.new"
  mv "$dir/holistix-server.crt.new" "$dir/holistix-server.crt"
  echo "issued $dir/holistix-server.crt"
fi
