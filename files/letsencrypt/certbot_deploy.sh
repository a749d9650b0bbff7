#!/bin/sh
# certbot-deploy TLS_DIR: certbot's deploy hook, after every issuance and renewal.
# Points TLS_DIR/fullchain.pem and privkey.pem (where nginx and Ganymede's organisation blocks
# read the certificate) at the lineage certbot just wrote, reloads nginx once nginx -t accepts
# the configuration with it, and returns when nginx really presents it (a reload is a signal:
# for a moment old workers still answer).
set -eu
tls_dir=$1
lineage=${RENEWED_LINEAGE:?certbot sets RENEWED_LINEAGE}
name=$(basename "$lineage")   # the certificate's name is DOMAIN
for file in fullchain.pem privkey.pem; do
  ln -sfn "$lineage/$file" "$tls_dir/.$file.link"
  mv -Tf "$tls_dir/.$file.link" "$tls_dir/$file"
done
nginx -t -q
systemctl reload nginx
wanted=$(openssl x509 -noout -serial -in "$lineage/cert.pem")
for attempt in $(seq 50); do
  served=$(echo | timeout 2 openssl s_client -connect 127.0.0.1:443 -servername "$name" 2>/dev/null \
    | openssl x509 -noout -serial 2>/dev/null || true)
  if [ "$served" = "$wanted" ]; then
    echo "certbot-deploy: nginx serves $lineage ($wanted)"
    exit 0
  fi
  sleep 0.1
done
echo "certbot-deploy: nginx still presents another certificate than $lineage after the reload" >&2
exit 1
