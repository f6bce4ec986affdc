#!/usr/bin/env bash
# `apptainer ARGS...` on any machine: the host's apptainer where there is one (a cluster's login or compute
# node), else Debian's apptainer run inside a builder root, a Debian sid root filesystem made once with
# mmdebstrap and cached (Apptainer is not in Debian 12 and needs sid's GLIBC). `make container` builds with it
# and slurm/local-apptainer.toml names it as the profile's `[container].apptainer`, so Slurm tasks run through it.
#   containers/apptainer.sh build|exec|test|inspect ...       (without a host apptainer: as root)
#   containers/apptainer.sh --builder-root                     (make the builder root only; prints its path)
# The builder root is entered with `unshare --mount` + `pivot_root` (apptainer refuses a chroot as a "weak
# chrooted environment"). Host paths are bound into it at the same paths: the repository, the working
# directory, $HOME (caches), /work/shared, the local wheel folders, the sources of every --bind/-B, the image's
# folder, and MRIAUG_BUILDER_BINDS (colon-separated). MRIAUG_BUILDER_ROOT: where the builder root lives
# (default ~/.cache/mriaug/apptainer/builder-sid); MRIAUG_HOST_APPTAINER=0 ignores a host apptainer.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(dirname "$HERE")"
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/mriaug/apptainer"
BROOT="${MRIAUG_BUILDER_ROOT:-$CACHE/builder-sid}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org}"

say() { echo "apptainer.sh: $*" >&2; }
die() { say "error: $*"; exit 1; }

# --- inside the new mount namespace: bind, pivot, run ------------------------------------------------------
if [[ "${1:-}" == --in-namespace ]]; then
    shift
    PATH="$PATH:/usr/sbin:/sbin"  # pivot_root and mount, also from a job whose PATH lacks them
    # Only as re-run by the code at the end of this script, in its own mount namespace: never mount on the host's.
    [[ -n "${MRIAUG_BUILDER_BIND_LIST+set}" && "$(readlink /proc/self/ns/mnt)" != "$(readlink /proc/1/ns/mnt)" ]] \
        || die "--in-namespace is this script's own step, not an option"
    cwd="$1"; shift
    IFS=$'\n' read -r -d '' -a binds < <(printf '%s\0' "$MRIAUG_BUILDER_BIND_LIST") || true
    unset MRIAUG_BUILDER_BIND_LIST
    # pivot_root needs the new root to be a mount point. Plain (not recursive) binds below, so a host path
    # that holds the builder root (e.g. $HOME) does not bring these mounts in again.
    mount --bind "$BROOT" "$BROOT"
    mount -t proc proc "$BROOT/proc"
    mount --rbind /sys "$BROOT/sys"
    mount --rbind /dev "$BROOT/dev"
    mount -t tmpfs -o mode=1777 tmpfs "$BROOT/tmp"
    for f in /etc/hosts /etc/resolv.conf; do  # the host's, as apptainer passes them on to the container
        [[ -e "$f" ]] && { touch "$BROOT$f"; mount --bind "$f" "$BROOT$f"; }
    done
    for b in "${binds[@]}"; do
        [[ -z "$b" ]] && continue
        ro=""
        if [[ "$b" == *:ro ]]; then b="${b%:ro}"; ro=1; fi
        if [[ -d "$b" ]]; then mkdir -p "$BROOT$b"; else mkdir -p "$BROOT$(dirname "$b")"; touch "$BROOT$b"; fi
        mount --bind "$b" "$BROOT$b"
        [[ -n "$ro" ]] && mount -o remount,bind,ro "$BROOT$b"
    done
    mkdir -p "$BROOT/.host"
    cd "$BROOT"
    pivot_root . .host
    umount -l /.host
    cd "$cwd"
    unset OLDPWD
    export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
    # A build runs %post under a default configuration that asks for every capability, ignoring
    # `root default capabilities = no`; drop those this machine withholds (CAP_SYS_RESOURCE here), else the
    # starter fails with "Requesting capability set ... while permitted capability set is ...". A build passes
    # APPTAINER_DROP_CAPS on to the %post it starts; for exec and test it changes nothing.
    bound=$(( 16#$(awk '/^CapBnd:/ { print $2 }' /proc/self/status) ))
    missing=$(( ((1 << ($(cat /proc/sys/kernel/cap_last_cap) + 1)) - 1) & ~bound ))
    if (( missing )); then
        APPTAINER_DROP_CAPS="$(capsh --decode="$(printf '%x' "$missing")" | sed 's/.*=//' | tr '[:lower:]' '[:upper:]')"
        export APPTAINER_DROP_CAPS
    fi
    exec apptainer "$@"
fi

# --- the host's apptainer, where there is one ----------------------------------------------------------------
if [[ "${MRIAUG_HOST_APPTAINER:-1}" != 0 && "${1:-}" != --builder-root ]] && command -v apptainer >/dev/null; then
    exec apptainer "$@"
fi

[[ $EUID -eq 0 ]] || die "there is no apptainer on this machine, and running Debian's in a builder root needs root \
(mmdebstrap, unshare, mounts); run as root, or where apptainer is installed (a cluster's login node)"

# --- the builder root: made once (under a minute to 4, 261 MB), then reused ------------------------------------
make_builder_root() {
    local tmp="$BROOT.tmp.$$"
    command -v mmdebstrap >/dev/null || {
        say "installing mmdebstrap"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mmdebstrap >/dev/null
    }
    say "making the builder root $BROOT (Debian sid with apptainer; once)"
    local start=$SECONDS
    rm -rf --one-file-system "$tmp"
    # The archive's sid Release file is past its Valid-Until date as served here.
    nice -n 19 mmdebstrap --quiet --variant=apt \
        --include=apptainer,squashfs-tools,fuse3,squashfuse,ca-certificates,libcap2-bin \
        --aptopt='Acquire::Check-Valid-Until "false"' --aptopt='Acquire::Check-Date "false"' \
        sid "$tmp" "deb $MIRROR/debian sid main"
    # This sandbox withholds a capability; "full" would ask apptainer for all of them and fail.
    sed -i 's/^root default capabilities = .*/root default capabilities = no/' "$tmp/etc/apptainer/apptainer.conf"
    grep -q '^root default capabilities = no$' "$tmp/etc/apptainer/apptainer.conf" \
        || die "$tmp/etc/apptainer/apptainer.conf: could not set 'root default capabilities = no'"
    # A real file: apptainer copies /etc/localtime into containers, and sid's is a link into a missing zoneinfo.
    rm -f "$tmp/etc/localtime"
    cp -L /etc/localtime "$tmp/etc/localtime" 2>/dev/null || cp "$tmp/usr/share/zoneinfo/Etc/UTC" "$tmp/etc/localtime"
    # This site's own certificate authorities (a proxy in front of PyPI), for downloads made in the builder root.
    if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
        cp /usr/local/share/ca-certificates/*.crt "$tmp/usr/local/share/ca-certificates/"
        chroot "$tmp" update-ca-certificates >/dev/null 2>&1
    fi
    echo "$(chroot "$tmp" apptainer --version 2>/dev/null) made $(date -u +%FT%TZ) in $((SECONDS - start)) s" \
        > "$tmp/.mriaug-builder"
    mv "$tmp" "$BROOT"
    say "builder root made in $((SECONDS - start)) s: $(cat "$BROOT/.mriaug-builder")"
}

mkdir -p "$(dirname "$BROOT")"
if [[ ! -f "$BROOT/.mriaug-builder" ]]; then
    # One maker at a time (concurrent Slurm tasks, a build and a test); the others wait, then reuse it.
    exec 9>"$BROOT.lock"
    flock 9
    [[ -f "$BROOT/.mriaug-builder" ]] || make_builder_root
    exec 9>&-
fi
if [[ "${1:-}" == --builder-root ]]; then echo "$BROOT"; exit 0; fi

# --- the host paths to bind in ----------------------------------------------------------------------------------
paths=("$REPO" "$PWD" "$HOME")
for p in /work/shared "${MRIAUG_CACHE:-}" "${HF_HOME:-}" "${TORCH_HOME:-}" "${APPTAINER_CACHEDIR:-}" \
    "${APPTAINER_TMPDIR:-}"; do
    [[ -n "$p" ]] && paths+=("$p")
done
for d in /opt/wheels /opt/pypi /opt/pypi-more; do paths+=("$d:ro"); done
# pip's configuration on this machine (which index, its certificate, the version cap), for a build's %post.
for f in /etc/pip.conf /etc/xdg/pip /etc/ssl/certs/ca-certificates.crt; do paths+=("$f:ro"); done
IFS=: read -r -a extra <<< "${MRIAUG_BUILDER_BINDS:-}"
paths+=("${extra[@]}")
# The sources of the command's binds, and any absolute path among its arguments (the image, the recipe).
want_bind=0
for a in "$@"; do
    if [[ $want_bind == 1 ]]; then specs="$a"; want_bind=0
    elif [[ "$a" == --bind=* ]]; then specs="${a#--bind=}"
    elif [[ "$a" == -B || "$a" == --bind ]]; then want_bind=1; continue
    elif [[ "$a" == /* ]]; then specs="$a"
    else continue
    fi
    IFS=, read -r -a list <<< "$specs"
    for s in "${list[@]}"; do paths+=("${s%%:*}"); done
done
# Existing paths only, absolute and resolved; one under a path already bound is covered by it.
resolved=()
for p in "${paths[@]}"; do
    ro=""
    if [[ "$p" == *:ro ]]; then p="${p%:ro}"; ro=":ro"; fi
    [[ -n "$p" ]] || continue
    # A path still to be made (the image a build writes): its folder, or the build writes into the tmpfs.
    [[ -e "$p" || "$p" != /* ]] || p="$(dirname "$p")"
    [[ -e "$p" ]] || continue
    p="$(realpath "$p")"
    if [[ -f "$p" && "$p" != /etc/* ]]; then p="$(dirname "$p")"; fi
    [[ "$p" == / || "$p" == "$BROOT" || "$p" == "$BROOT"/* ]] && continue
    resolved+=("$p$ro")
done
mapfile -t resolved < <(printf '%s\n' "${resolved[@]}" | sort -u)
list=""
for p in "${resolved[@]}"; do
    base="${p%:ro}"
    covered=0
    for q in "${resolved[@]}"; do
        q="${q%:ro}"
        [[ "$q" != "$base" && "$base" == "$q"/* ]] && covered=1
    done
    [[ $covered == 1 ]] || list+="$p"$'\n'
done

export MRIAUG_BUILDER_BIND_LIST="$list"
exec unshare --mount --propagation private "$BASH" "${BASH_SOURCE[0]}" --in-namespace "$PWD" "$@"
