#!/usr/bin/env bash
# A development certificate authority and signing key for update bundles (docs/updates.md):
#
#   image/dev-keys.sh DIR
#
# DIR gets ca.cert.pem (the keyring an image trusts), signing.cert.pem and signing.key.pem
# (what image/make-bundle.sh signs with), and the CA's own key. Kept when they exist. For the
# QEMU twin and tests only: a release is signed with a key made and kept offline, and its CA
# certificate is the one that goes into /etc/rauc/keyring.pem.
set -euo pipefail

dir=${1:?usage: dev-keys.sh DIR}
mkdir -p "$dir"
cd "$dir"
[ -s signing.cert.pem ] && [ -s signing.key.pem ] && [ -s ca.cert.pem ] && exit 0
umask 077
ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
openssl req -x509 "${ec[@]}" -keyout ca.key.pem -out ca.cert.pem -days 3650 \
    -subj "/O=chatmail relay appliance/CN=development update CA" 2>/dev/null
openssl req "${ec[@]}" -keyout signing.key.pem -out signing.csr.pem \
    -subj "/O=chatmail relay appliance/CN=development update signing" 2>/dev/null
openssl x509 -req -in signing.csr.pem -CA ca.cert.pem -CAkey ca.key.pem -CAcreateserial \
    -out signing.cert.pem -days 3650 \
    -extfile <(printf '%s\n' basicConstraints=CA:FALSE keyUsage=digitalSignature) 2>/dev/null
rm -f signing.csr.pem ca.cert.srl
chmod 644 ca.cert.pem signing.cert.pem
