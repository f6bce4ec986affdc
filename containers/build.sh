#!/usr/bin/env bash
# `make container`: containers/mriaug.sif from containers/mriaug.def, through containers/apptainer.sh (the host's
# apptainer, else Debian's in a builder root). One recipe, two bases (containers/README.md):
#   docker  the recipe's default, `From: debian:bookworm-slim` from Docker Hub (a cluster's login node);
#   local   a Debian 12 minbase root made here with mmdebstrap, as `Bootstrap: localimage` (where no container
#           registry can be reached; the default where the host has no apptainer).
# MRIAUG_IMAGE_BASE=docker|local chooses; MRIAUG_REFRESH_BASE=1 remakes the cached local base. The image is built
# from a snapshot of the checkout's HEAD (`git archive`), so it holds exactly one commit's code; uncommitted
# changes are left out, with a note. One build at a time (a lock); heavy steps run under `nice -n 19`.
#   containers/build.sh [OUT.sif]      (default containers/mriaug.sif)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(dirname "$HERE")"
OUT="$(realpath -m "${1:-$REPO/containers/mriaug.sif}")"
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/mriaug/apptainer"
BASE_DIR="$CACHE/base-bookworm"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org}"
APPTAINER="$HERE/apptainer.sh"

say() { echo "container: $*" >&2; }
die() { say "error: $*"; exit 1; }

host_apptainer=0
command -v apptainer >/dev/null && [[ "${MRIAUG_HOST_APPTAINER:-1}" != 0 ]] && host_apptainer=1
if [[ $host_apptainer == 0 && $EUID -ne 0 ]]; then
    die "apptainer is not installed here, and building without it (Debian's apptainer in a builder root, a local \
Debian base) needs root: run \`make container\` as root, or on a machine with apptainer (e.g. a cluster's login node)"
fi
base="${MRIAUG_IMAGE_BASE:-$([[ $host_apptainer == 1 ]] && echo docker || echo local)}"
[[ "$base" == docker || "$base" == local ]] || die "MRIAUG_IMAGE_BASE=$base: must be docker or local"

mkdir -p "$CACHE"
exec 8>"$CACHE/build.lock"
if ! flock -n 8; then
    say "another image build is running (lock $CACHE/build.lock); waiting for it"
    flock 8
fi

args=()
if [[ $base == local ]]; then
    # The local stand-in for debian:bookworm-slim: a minbase Debian 12 root (the packages that image holds), made
    # once and reused like a pulled base image.
    if [[ ! -f "$BASE_DIR/.mriaug-base" || "${MRIAUG_REFRESH_BASE:-0}" == 1 ]]; then
        command -v mmdebstrap >/dev/null || {
            say "installing mmdebstrap"
            apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mmdebstrap >/dev/null
        }
        start=$SECONDS
        say "making the local base $BASE_DIR (debian bookworm, minbase)"
        rm -rf --one-file-system "$BASE_DIR" "$BASE_DIR.tmp"
        nice -n 19 mmdebstrap --quiet --variant=minbase --aptopt='Acquire::Check-Valid-Until "false"' \
            --aptopt='Acquire::Check-Date "false"' bookworm "$BASE_DIR.tmp" \
            "deb $MIRROR/debian bookworm main" "deb $MIRROR/debian bookworm-updates main" \
            "deb $MIRROR/debian-security bookworm-security main"
        # This site's own certificate authorities (a proxy in front of PyPI), as a site's base image would carry
        # them: the recipe's ca-certificates install takes them into the image's bundle.
        if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
            mkdir -p "$BASE_DIR.tmp/usr/local/share/ca-certificates"
            cp /usr/local/share/ca-certificates/*.crt "$BASE_DIR.tmp/usr/local/share/ca-certificates/"
        fi
        date -u +%FT%TZ > "$BASE_DIR.tmp/.mriaug-base"
        mv "$BASE_DIR.tmp" "$BASE_DIR"
        say "local base made in $((SECONDS - start)) s"
    fi
    args+=(--build-arg bootstrap=localimage --build-arg "from=$BASE_DIR")
fi

# This machine's local wheel folders (torch and its CUDA wheels lie on its disk), for the %post's pip only:
# bound at /mnt (a bind's mount point must already exist in the image) and named by pip's environment, which
# reaches %post through APPTAINERENV_*. Every file is still checked against the lock's hashes, so the same
# files come from PyPI where these folders do not exist.
if [[ -d /opt/pypi-more/simple || -d /opt/pypi/simple || -d /opt/wheels ]]; then
    args+=(--bind /opt:/mnt:ro)
    [[ -d /opt/wheels ]] && export APPTAINERENV_PIP_FIND_LINKS=/mnt/wheels
    idx=""
    for d in pypi pypi-more; do [[ -d /opt/$d/simple ]] && idx+="file:///mnt/$d/simple "; done
    [[ -n "$idx" ]] && export APPTAINERENV_PIP_EXTRA_INDEX_URL="${idx% }"
    # pip's own certificate bundle lacks this site's authorities; the system's (from the recipe's
    # ca-certificates) has them.
    export APPTAINERENV_PIP_CERT=/etc/ssl/certs/ca-certificates.crt APPTAINERENV_PIP_DEFAULT_TIMEOUT=180
fi

# The recipe's %files come from a snapshot of HEAD: the image holds one commit's code, whatever the work tree
# holds. MRIAUG_IMAGE_FROM=worktree takes the files as they are instead (to try a change before committing it).
src="$CACHE/src"
rm -rf "$src" && mkdir -p "$src"
commit=""
if [[ "${MRIAUG_IMAGE_FROM:-head}" == head ]] && git -C "$REPO" rev-parse --git-dir >/dev/null 2>&1; then
    commit="$(git -C "$REPO" rev-parse HEAD)"
    git -C "$REPO" archive HEAD | tar -x -C "$src"
    dirty="$(git -C "$REPO" status --porcelain --untracked-files=no -- pyproject.toml README.md mriaug jobs \
        requirements containers | head -5)"
    [[ -z "$dirty" ]] || say "note: uncommitted changes are not in the image (it is built from HEAD $commit):
$dirty"
elif [[ "${MRIAUG_IMAGE_FROM:-head}" == worktree || ! -d "$REPO/.git" ]]; then
    tar -C "$REPO" --exclude=.git --exclude=.venv --exclude=results --exclude=pools --exclude='*.sif' \
        --exclude='*.sif.part' -c . | tar -x -C "$src"
else
    die "MRIAUG_IMAGE_FROM=${MRIAUG_IMAGE_FROM}: must be head or worktree"
fi

# Apptainer's scratch space on disk, not in the builder root's /tmp (a tmpfs): the image's tree is ~7 GB.
export APPTAINER_TMPDIR="${APPTAINER_TMPDIR:-/var/tmp/mriaug-apptainer-build}"
mkdir -p "$APPTAINER_TMPDIR" "$(dirname "$OUT")"
start=$SECONDS
say "building $OUT (base: $base${commit:+, commit ${commit:0:12}})"
(cd "$src" && nice -n 19 "$APPTAINER" build --force "${args[@]}" "$OUT.part" containers/mriaug.def)
mv "$OUT.part" "$OUT"
rm -rf "$src"
say "built $OUT in $((SECONDS - start)) s: $(du -h "$OUT" | cut -f1)"
"$APPTAINER" inspect --labels "$OUT" | grep -E '^mriaug\.' >&2 || true
