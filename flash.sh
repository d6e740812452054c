#!/usr/bin/env bash
# Write the chatmail appliance image to an SD card, safely.
#
#   sudo ./flash.sh [options] IMAGE DEVICE
#
# IMAGE may be raw (.img) or compressed (.img.xz, .img.gz, .img.zst). DEVICE is the whole card,
# e.g. /dev/sdb or /dev/mmcblk0; there is no default, and the script refuses
#   - anything that is not a whole-disk block device (a partition, a file),
#   - a disk with a mounted partition, and the disk that holds the running system (/),
#   - a disk larger than --max-size (default 128G) unless --force is given,
#   - a disk smaller than the image.
# It shows the device's model and size and asks for confirmation, checks that the whole card
# keeps what is written to it (a fake card that claims more than it holds is refused before
# anything of the image is written), writes, then reads the card back and compares SHA-256
# hashes. Optional settings are then stored on the card's boot
# partition as chatmail-settings.txt, which the appliance reads once at its next boot.
#
# Options:
#   --hostname NAME           network name of the box (default: chatmail)
#   --wifi-ssid SSID          Wi-Fi network to join (the cable works without it)
#   --wifi-password PASS      its WPA passphrase (8-63 characters)
#   --wifi-country CC         two-letter country code for the Wi-Fi regulatory domain
#   --domain DOMAIN           mail domain; default "auto" = the box's own IPv4 address (LAN mode)
#   --registration open|closed  whether the box hands out new accounts
#   --privacy-mail ADDR       contact address shown on the box's privacy page
#   --max-size SIZE           refuse larger devices (default 128G); --force ignores it
#   --yes                     do not ask for confirmation
#   --dry-run                 do every check, then stop before writing
#   --verify-only             write nothing: compare a card written earlier with the image
set -euo pipefail

MIB=1048576
max_size=128G
force=0
assume_yes=0
dry_run=0
verify_only=0
settings=()

die() { echo "flash.sh: $*" >&2; exit 1; }
usage() { sed -n '2,/^set -euo/p' "$0" | sed -e 's/^# \{0,1\}//' -e '/^set -euo/d' >&2; exit 2; }

setting() {
    # Settings file values are one line each; a newline would smuggle in another key.
    case "$2" in *$'\n'* | *$'\r'*) die "$1: must be a single line" ;; esac
    settings+=("$1=$2")
}

to_bytes() {
    numfmt --from=iec "${1%B}" 2>/dev/null || die "not a size: $1 (use e.g. 64G)"
}

positional=()
while [ $# -gt 0 ]; do
    case "$1" in
        --hostname) setting hostname "${2:?--hostname needs a value}"; shift ;;
        --wifi-ssid) setting wifi_ssid "${2:?--wifi-ssid needs a value}"; shift ;;
        --wifi-password) setting wifi_psk "${2:?--wifi-password needs a value}"; shift ;;
        --wifi-country) setting wifi_country "${2:?--wifi-country needs a value}"; shift ;;
        --domain) setting mail_domain "${2:?--domain needs a value}"; shift ;;
        --registration)
            case "${2:-}" in
                open) setting registration_open true ;;
                closed) setting registration_open false ;;
                *) die "--registration must be open or closed" ;;
            esac
            shift ;;
        --privacy-mail) setting privacy_mail "${2:?--privacy-mail needs a value}"; shift ;;
        --max-size) max_size=${2:?--max-size needs a value}; shift ;;
        --force) force=1 ;;
        --yes) assume_yes=1 ;;
        --dry-run) dry_run=1 ;;
        --verify-only) verify_only=1 ;;
        -h | --help) usage ;;
        --) shift; positional+=("$@"); break ;;
        -*) die "unknown option $1 (see --help)" ;;
        *) positional+=("$1") ;;
    esac
    shift
done
[ ${#positional[@]} -eq 2 ] || usage
image=${positional[0]}
device=${positional[1]}
max_bytes=$(to_bytes "$max_size")

# --- the image ---------------------------------------------------------------------------
[ -f "$image" ] || die "$image: no such image file"
case "$image" in
    *.xz) decompress=(xz -dc) ;;
    *.gz) decompress=(gzip -dc) ;;
    *.zst) decompress=(zstd -dcq) ;;
    *) decompress=(cat) ;;
esac
command -v "${decompress[0]}" >/dev/null || die "${decompress[0]} is needed to read $image"
case "${decompress[0]}" in
    cat) image_bytes=$(stat -c %s "$image") ;;
    xz) image_bytes=$(xz --robot -l "$image" | awk '$1 == "totals" { print $5 }') ;;
    *) image_bytes=$("${decompress[@]}" "$image" | wc -c) ;;
esac
[ "$image_bytes" -gt 0 ] || die "$image: empty image"

# --- the device: every refusal comes before any question -----------------------------------
[ -e "$device" ] || die "$device: no such device"
[ -b "$device" ] || die "$device: not a block device (give the card itself, e.g. /dev/sdb)"
dev=$(readlink -f "$device")
name=$(basename "$dev")
[ -e "/sys/class/block/$name/partition" ] &&
    die "$device is a partition; give the whole card (e.g. /dev/sdb, not /dev/sdb1)"
[ "$(cat "/sys/class/block/$name/ro" 2>/dev/null || echo 0)" = 0 ] ||
    die "$device is read-only (check the card's lock switch)"

# The disk under / (also through LVM, RAID or dm-crypt: walk up from the root file system).
root_source=$(findmnt -n -o SOURCE --target / | sed 's/\[.*//')
if [ -b "$root_source" ]; then
    for parent in $(lsblk -s -n -r -o KNAME "$root_source" 2>/dev/null); do
        [ "$parent" = "$name" ] && die "$device holds the running system (/); refusing"
    done
fi
mounted=$(
    lsblk -n -r -o KNAME,MOUNTPOINT "$dev" | awk '$2 != "" { print "/dev/" $1 " on " $2 }'
    grep -E "^/dev/${name}(p?[0-9]+)? " /proc/mounts | awk '{ print $1 " on " $2 }' || true
)
if [ -n "$mounted" ]; then
    die "$device has mounted file systems; unmount them first:"$'\n'"$mounted"
fi
if grep -q "^$dev " /proc/swaps || grep -q "^/dev/$name[p0-9]* " /proc/swaps; then
    die "$device is used as swap; refusing"
fi
dev_bytes=$(blockdev --getsize64 "$dev")
if [ "$dev_bytes" -gt "$max_bytes" ] && [ "$force" = 0 ]; then
    die "$device is $(numfmt --to=iec "$dev_bytes")B, more than --max-size $max_size:" \
        "is it really the SD card? Use --force if so"
fi
[ "$dev_bytes" -ge "$image_bytes" ] ||
    die "$device ($(numfmt --to=iec "$dev_bytes")B) is smaller than the image ($(numfmt --to=iec "$image_bytes")B)"

model=$(lsblk -d -n -o VENDOR,MODEL "$dev" | xargs || true)
transport=$(lsblk -d -n -o TRAN "$dev" | xargs || true)
echo "Image:  $image ($(numfmt --to=iec "$image_bytes")B)"
echo "Device: $dev  ${model:-(no model name)}${transport:+, $transport}, $(numfmt --to=iec "$dev_bytes")B"
[ "$verify_only" = 1 ] || echo "        EVERYTHING on $dev will be erased."
if [ "$dry_run" = 1 ]; then
    echo "dry run: all checks passed, nothing written"
    exit 0
fi

verify() {
    echo "Verifying..."
    local count card_hash
    count=$(((image_bytes + MIB - 1) / MIB))
    # O_DIRECT: read what the card holds, not what the page cache remembers writing.
    card_hash=$(dd if="$dev" bs=1M count="$count" iflag=direct status=none |
        head -c "$image_bytes" | sha256sum | cut -d' ' -f1)
    if [ "$card_hash" != "$image_hash" ]; then
        die "verification FAILED: the card does not hold the image" \
            "(card $card_hash, image $image_hash). The card may be failing or fake; try another one."
    fi
    echo "Verified: sha256 $image_hash"
}

echo "Reading the image..."
image_hash=$("${decompress[@]}" "$image" | sha256sum | cut -d' ' -f1)
if [ "$verify_only" = 1 ]; then
    verify
    exit 0
fi
if [ "$assume_yes" = 0 ]; then
    printf 'Type "yes" to write the image to %s: ' "$dev"
    read -r answer || answer=""
    [ "$answer" = yes ] || die "not confirmed; nothing written"
fi

# --- the whole card, before the image -------------------------------------------------------
# A counterfeit card claims more than its flash holds and wraps the addresses it lacks back to
# the start (its controller ignores the high address bits), so the image region reads back
# fine while the data partition, grown over the whole card at first boot, would overwrite the
# system. Write a marker naming its own place at regular places over the whole card (every
# SPACING MiB, a power of two, at most 1024 of them, and the last MiB), then read each back:
# on such a card a later marker has overwritten an earlier one. Real flash comes in whole MiB
# multiples, so a wrap lands exactly on another marker.
check_whole_card() {
    local mib=$((dev_bytes / MIB)) spacing=1 run place places=() got want
    [ "$mib" -ge 1 ] || return 0
    while [ $((mib / spacing)) -gt 1024 ]; do spacing=$((spacing * 2)); done
    for ((place = 0; place < mib; place += spacing)); do places+=("$place"); done
    [ "${places[-1]}" = $((mib - 1)) ] || places+=($((mib - 1)))
    run=$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')
    marker() { printf 'chatmail card check %s at MiB %012d' "$run" "$1"; }
    echo "Checking the whole card (${#places[@]} places, every ${spacing} MiB)..."
    for place in "${places[@]}"; do
        { marker "$place"; head -c 4096 /dev/zero; } | head -c 4096 |
            dd of="$dev" bs=4096 seek=$((place * 256)) count=1 iflag=fullblock oflag=direct \
                conv=notrunc status=none || die "writing to $device at MiB $place failed"
    done
    sync
    blockdev --flushbufs "$dev"
    for place in "${places[@]}"; do
        want=$(marker "$place")
        got=$(dd if="$dev" bs=4096 skip=$((place * 256)) count=1 iflag=direct status=none |
            head -c ${#want} | tr -d '\0')
        [ "$got" = "$want" ] && continue
        case "$got" in
            "chatmail card check $run at MiB "*)
                die "this card is not as large as it claims ($(numfmt --to=iec "$dev_bytes")B):" \
                    "what was written at MiB $((10#${got##* })) came back at MiB $place, so the card" \
                    "wraps around. It is fake or broken; nothing of the image was written." ;;
            *)
                die "this card does not keep what is written to it: MiB $place of" \
                    "$(numfmt --to=iec "$dev_bytes")B reads back wrong. It is fake or broken;" \
                    "nothing of the image was written." ;;
        esac
    done
    echo "The whole card holds what was written to it."
}
check_whole_card

# --- write and verify ---------------------------------------------------------------------
echo "Writing..."
"${decompress[@]}" "$image" | dd of="$dev" bs=4M iflag=fullblock oflag=direct conv=fsync status=none ||
    die "writing to $device failed"
sync
blockdev --flushbufs "$dev"
verify

# --- settings on the boot partition -------------------------------------------------------
if [ ${#settings[@]} -gt 0 ]; then
    command -v mcopy >/dev/null || die "mtools is needed to store settings (apt install mtools)"
    start=$(partx -g -o START -n 1 "$dev" 2>/dev/null | xargs || true)
    [ -n "$start" ] || die "no partition table found on $dev after writing"
    offset=$((start * 512))
    tmp=$(mktemp)
    trap 'rm -f "$tmp"' EXIT
    {
        echo "# Read once by the chatmail appliance at boot, then deleted."
        printf '%s\n' "${settings[@]}"
    } >"$tmp"
    MTOOLS_SKIP_CHECK=1 mcopy -o -i "$dev@@$offset" "$tmp" ::chatmail-settings.txt
    sync
    echo "Stored settings on the boot partition: $(printf '%s\n' "${settings[@]}" | cut -d= -f1 | xargs)"
fi
# Let the desktop see the new partitions (harmless where the kernel cannot re-read).
blockdev --rereadpt "$dev" 2>/dev/null || true
echo "Done. Put the card into the Raspberry Pi and power it on."
