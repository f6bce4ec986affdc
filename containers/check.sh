#!/usr/bin/env bash
# `make container-check`: build what `apptainer build` would, as far as a machine without Apptainer allows.
# A clean Debian root filesystem (mmdebstrap, the suite of the recipe's `From:`), then the recipe's own
# sections run in it with chroot: %files copied, %post (the install), %test (the smoke check) under
# %environment. Needs root. CONTAINER_CHECK_DIR: where the root filesystem goes (default
# /var/tmp/mriaug-container-check); KEEP=1 keeps it afterwards. containers/README.md says what this covers.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEF="$ROOT/containers/mriaug.def"
WORK="${CONTAINER_CHECK_DIR:-/var/tmp/mriaug-container-check}"
RFS="$WORK/rootfs"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org}"

say() { echo "container-check: $*" >&2; }
die() { say "error: $*"; exit 1; }
# The body of one %section of the recipe (up to the next %section).
section() { awk -v s="%$1" '$1 == s { f = 1; next } /^%[a-z]/ { f = 0 } f' "$DEF"; }

[[ $EUID -eq 0 ]] || die "run as root (mmdebstrap and chroot)"
if ! command -v mmdebstrap >/dev/null; then
    say "installing mmdebstrap"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mmdebstrap >/dev/null
fi
# The base the recipe names by default (%arguments' from=, or a literal From:).
from="$(awk '$1 == "From:" { print $2 }' "$DEF")"
[[ "$from" == "{{" ]] && from="$(section arguments | sed -n 's/^ *from=//p')"
[[ "$from" =~ ^debian:([a-z]+)(-slim)?$ ]] || die "$DEF: From: $from is not a debian:SUITE[-slim] image"
suite="${BASH_REMATCH[1]}"

MOUNTS=()
mounted_under() { awk -v r="$RFS" '$2 == r || index($2, r "/") == 1 { print $2 }' /proc/mounts | sort -r; }
unmount_all() {  # every mount under the root filesystem, deepest first (also those of an interrupted run)
    local m
    for m in $(mounted_under); do umount "$m" 2>/dev/null || umount -l "$m" || true; done
    # Never delete through a mount: /dev and this machine's wheel folders are bound in.
    [[ -z "$(mounted_under)" ]] || die "still mounted under $RFS: $(mounted_under | tr '\n' ' '); not deleting it"
}
cleanup() {
    unmount_all
    if [[ "${KEEP:-0}" != 1 ]]; then rm -rf --one-file-system "$RFS"; fi
}
trap cleanup EXIT
bind() {  # bind SRC into the root filesystem at the same path (ro when asked)
    mkdir -p "$RFS$1"
    mount --bind "$1" "$RFS$1"
    MOUNTS+=("$RFS$1")
    if [[ "${2:-}" == ro ]]; then mount -o remount,bind,ro "$RFS$1"; fi
}

unmount_all
rm -rf --one-file-system "$RFS"
mkdir -p "$WORK"
start=$SECONDS
say "debian $suite (minbase, as debian:$suite-slim) into $RFS"
# Valid-Until/Date unchecked as on this machine's own apt (its clock and mirror may disagree).
mmdebstrap --quiet --variant=minbase --aptopt='Acquire::Check-Valid-Until "false"' \
    --aptopt='Acquire::Check-Date "false"' "$suite" "$RFS" \
    "deb $MIRROR/debian $suite main" "deb $MIRROR/debian $suite-updates main" \
    "deb $MIRROR/debian-security $suite-security main"
say "root filesystem made in $((SECONDS - start)) s"

# %files: SRC (relative to the repository) DST (in the image).
while read -r src dst; do
    [[ -z "$src" || "$src" == \#* ]] && continue
    [[ -e "$ROOT/$src" ]] || die "$DEF: %files: $src does not exist"
    mkdir -p "$RFS$(dirname "$dst")"
    cp -a "$ROOT/$src" "$RFS$dst"
done < <(section files)
find "$RFS/opt" -name __pycache__ -prune -exec rm -rf {} +

bind /proc
bind /sys ro
bind /dev
cp /etc/resolv.conf "$RFS/etc/resolv.conf"
# This machine's pip configuration and local wheel folders, for the build only (torch and its CUDA wheels lie
# on this disk; every file is still checked against the lock's hashes). Removed before %test.
pip_conf=()
for f in /etc/pip.conf /etc/xdg/pip; do
    if [[ -e "$f" ]]; then mkdir -p "$RFS$(dirname "$f")"; cp -a "$f" "$RFS$f"; pip_conf+=("$f"); fi
done
for d in /opt/wheels /opt/pypi /opt/pypi-more; do [[ -d "$d" ]] && bind "$d" ro; done
# This site's own certificate authorities (a proxy in front of PyPI), where a site build would add them: the
# recipe's ca-certificates install takes them into the image's bundle.
if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
    mkdir -p "$RFS/usr/local/share/ca-certificates"
    cp /usr/local/share/ca-certificates/*.crt "$RFS/usr/local/share/ca-certificates/"
fi

in_image() {  # run a script in the root filesystem with a clean environment, as Apptainer does
    env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 \
        ${PIP_FIND_LINKS:+PIP_FIND_LINKS="$PIP_FIND_LINKS"} PIP_DEFAULT_TIMEOUT=180 \
        chroot "$RFS" /bin/sh -eu -c "$1"
}

start=$SECONDS
say "%post"
in_image "$(section post)"
size="$(du -sh "${MOUNTS[@]/#/--exclude=}" "$RFS" | cut -f1)"
say "%post done in $((SECONDS - start)) s; image $size ($(du -sh "$RFS/opt/venv" | cut -f1) in /opt/venv)"
for f in "${pip_conf[@]}"; do rm -rf "${RFS:?}$f"; done

start=$SECONDS
say "%test (under %environment)"
in_image "$(section environment)
$(section test)"
say "%test passed in $((SECONDS - start)) s"
say "ok: the recipe installs and passes its smoke check in a clean debian $suite"
