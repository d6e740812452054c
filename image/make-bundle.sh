#!/usr/bin/env bash
# Make a signed RAUC update bundle from a root file system image (docs/updates.md).
#
#   image/make-bundle.sh OUT.raucb ROOT_IMAGE VERSION
#   image/make-bundle.sh --dev-keyring DIR        (only make the development keys, print the CA)
#
# ROOT_IMAGE is the raw squashfs that the update writes to the inactive root slot (slot class
# `rootfs`). Environment:
#   RAUC_CERT, RAUC_KEY  the signing certificate and key (the release pair). When both are
#                        unset, a throwaway development CA and signing certificate are made in
#                        DEV_KEYS_DIR (default ./dev-keys) and used; their CA (dev-ca.cert.pem)
#                        is the keyring a development system.conf points at. Never put it on
#                        an image that leaves the developer's desk.
#   COMPATIBLE           the compatible string (default chatmail-relay-appliance); RAUC refuses
#                        a bundle whose compatible differs from the system's.
#   RAUC                 the rauc binary (default rauc)
#
# The bundle format is "plain" (a squashfs with the signature appended): RAUC 1.8 verifies it
# completely before installing and needs only a loop device to read it. "verity" would need
# device-mapper on the box as well, and buys streaming installs, which we do not use.
set -euo pipefail

rauc=${RAUC:-rauc}
compatible=${COMPATIBLE:-chatmail-relay-appliance}

die() { echo "make-bundle.sh: $*" >&2; exit 2; }

# A development CA and a signing certificate issued by it, in $1 (made once, then reused).
dev_keys() {
    local dir=$1
    mkdir -p "$dir"
    if [ ! -f "$dir/dev-ca.cert.pem" ]; then
        openssl req -x509 -newkey rsa:3072 -nodes -days 3650 -subj "/CN=chatmail relay dev CA" \
            -addext basicConstraints=critical,CA:TRUE \
            -addext keyUsage=critical,keyCertSign,cRLSign \
            -keyout "$dir/dev-ca.key.pem" -out "$dir/dev-ca.cert.pem" 2>/dev/null
    fi
    if [ ! -f "$dir/dev-signing.cert.pem" ]; then
        # No extendedKeyUsage: RAUC 1.8 checks the S/MIME signing purpose, which a codeSigning
        # usage fails ("unsuitable certificate purpose").
        openssl req -newkey rsa:3072 -nodes -subj "/CN=chatmail relay dev signing" \
            -keyout "$dir/dev-signing.key.pem" -out "$dir/dev-signing.csr" 2>/dev/null
        openssl x509 -req -days 3650 -in "$dir/dev-signing.csr" \
            -CA "$dir/dev-ca.cert.pem" -CAkey "$dir/dev-ca.key.pem" -CAcreateserial \
            -extfile <(printf '%s\n' basicConstraints=critical,CA:FALSE \
                keyUsage=critical,digitalSignature subjectKeyIdentifier=hash \
                authorityKeyIdentifier=keyid) \
            -out "$dir/dev-signing.cert.pem" 2>/dev/null
        rm -f "$dir/dev-signing.csr"
    fi
    chmod 600 "$dir"/*.key.pem
}

if [ "${1:-}" = "--dev-keyring" ]; then
    dir=${2:?usage: make-bundle.sh --dev-keyring DIR}
    dev_keys "$dir"
    echo "$dir/dev-ca.cert.pem"
    exit 0
fi

[ $# -eq 3 ] || die "usage: make-bundle.sh OUT.raucb ROOT_IMAGE VERSION"
out=$1 root=$2 version=$3
[ -f "$root" ] || die "no root image at $root"
[[ $version =~ ^[0-9]+(\.[0-9]+)*$ ]] || die "version must be dotted numbers like 1.4.2, got $version"

if [ -z "${RAUC_CERT:-}" ] && [ -z "${RAUC_KEY:-}" ]; then
    keys=${DEV_KEYS_DIR:-./dev-keys}
    dev_keys "$keys"
    RAUC_CERT=$keys/dev-signing.cert.pem RAUC_KEY=$keys/dev-signing.key.pem
    echo "make-bundle.sh: signed with the DEVELOPMENT key in $keys (keyring: $keys/dev-ca.cert.pem)" >&2
fi
[ -f "${RAUC_CERT:-}" ] && [ -f "${RAUC_KEY:-}" ] || die "RAUC_CERT and RAUC_KEY must both name files"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir "$work/content"
cp "$root" "$work/content/rootfs.img"
cat > "$work/content/manifest.raucm" <<EOF
[update]
compatible=$compatible
version=$version

[bundle]
format=plain

[image.rootfs]
filename=rootfs.img
EOF
rm -f "$out"
"$rauc" bundle --cert="$RAUC_CERT" --key="$RAUC_KEY" "$work/content" "$out" >&2
echo "$out"
