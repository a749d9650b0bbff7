#!/bin/sh
# certbot-deploy TLS_DIR: certbot's deploy hook, after every issuance and renewal.
# Points TLS_DIR/fullchain.pem and privkey.pem (where nginx and Ganymede's organisation blocks
# read the certificate) at the lineage certbot just wrote, then reloads nginx once nginx -t
# accepts the configuration with it.
set -eu
tls_dir=$1
lineage=${RENEWED_LINEAGE:?certbot sets RENEWED_LINEAGE}
for name in fullchain.pem privkey.pem; do
  ln -sfn "$lineage/$name" "$tls_dir/.$name.link"
  mv -Tf "$tls_dir/.$name.link" "$tls_dir/$name"
done
nginx -t -q
systemctl reload nginx
echo "certbot-deploy: nginx serves $lineage"
