#!/bin/sh
# holistix-host-certificates CA_DIR CA_NAME KEY CERT CN SANS [DAYS]
#
# A certificate signed by a private CA made on this host, for TLS that no public CA serves:
# PostgreSQL on loopback, and nginx's placeholder until the letsencrypt module takes over.
# Installed by holistix-deploy. The CA (CA_DIR/holistix-ca.key and .crt, 10 years, key root
# only) is made once; KEY is made when missing (EC P-256); CERT (CN, subjectAltName SANS, DAYS
# days, default 365: Mozilla's limit is 366) is re-issued when it has under 30 days left or
# another CA signed it. Clients verify it with CA_DIR/holistix-ca.crt.
set -eu
ca_dir=$1 ca_name=$2 key=$3 cert=$4 cn=$5 sans=$6 days=${7:-365}
umask 077
if [ ! -s "$ca_dir/holistix-ca.key" ]; then
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:prime256v1 -out "$ca_dir/holistix-ca.key.new"
  mv "$ca_dir/holistix-ca.key.new" "$ca_dir/holistix-ca.key"
  rm -f "$ca_dir/holistix-ca.crt"
fi
if ! openssl x509 -checkend 31536000 -noout -in "$ca_dir/holistix-ca.crt" >/dev/null 2>&1; then
  openssl req -new -x509 -key "$ca_dir/holistix-ca.key" -days 3650 -subj "/CN=$ca_name ($(hostname))" \
    -addext "basicConstraints=critical,CA:TRUE,pathlen:0" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -out "$ca_dir/holistix-ca.crt.new"
  chmod 0644 "$ca_dir/holistix-ca.crt.new"
  mv "$ca_dir/holistix-ca.crt.new" "$ca_dir/holistix-ca.crt"
  rm -f "$cert"   # signed by the old CA
fi
if [ ! -s "$key" ]; then
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:prime256v1 -out "$key.new"
  mv "$key.new" "$key"
fi
if ! openssl x509 -checkend 2592000 -noout -in "$cert" >/dev/null 2>&1 \
  || ! openssl verify -CAfile "$ca_dir/holistix-ca.crt" "$cert" >/dev/null 2>&1; then
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=%s\n' \
    "$sans" > "$work/ext"
  openssl req -new -key "$key" -subj "/CN=$cn" -out "$work/csr"
  openssl x509 -req -in "$work/csr" -CA "$ca_dir/holistix-ca.crt" -CAkey "$ca_dir/holistix-ca.key" -days "$days" \
    -set_serial "0x7$(openssl rand -hex 15)" -extfile "$work/ext" -out "$cert.new" 2>/dev/null
  chmod 0644 "$cert.new"
  mv "$cert.new" "$cert"
  echo "issued $cert"
fi
