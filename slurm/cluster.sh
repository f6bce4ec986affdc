#!/usr/bin/env bash
# Start, stop or inspect the single-node Slurm test cluster (munged + slurmctld + slurmd on this host).
#   slurm/cluster.sh up|down|status      (as root; idempotent)
# `up` installs slurm-wlm and munge with apt-get when missing, writes /etc/slurm/slurm.conf from
# slurm/slurm.conf.in (refusing to replace a slurm.conf it did not write) and waits until the node is idle.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CONF=/etc/slurm/slurm.conf
MARK="# mriaug single-node test cluster"
STATE=/var/spool/mriaug-slurm
RUN=/run/mriaug-slurm
LOG=/var/log/mriaug-slurm
MUNGE_PID=/run/munge/munged.pid

say() { echo "cluster: $*" >&2; }
die() { say "error: $*"; exit 1; }

alive() { [[ -f "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

install_packages() {
    if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null \
        && command -v sbatch >/dev/null; then
        return
    fi
    say "installing slurm-wlm and munge"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq slurm-wlm munge >/dev/null
}

write_conf() {
    if [[ -f "$CONF" ]] && ! head -n1 "$CONF" | grep -qF "$MARK"; then
        die "$CONF exists and was not written by this script; not touching a real cluster's config"
    fi
    local host cpus mem
    host="$(hostname -s)"
    cpus="$(nproc)"
    # A little under the node's memory so slurmd never registers with less than slurm.conf claims.
    mem=$(( $(awk '/MemTotal/ {print int($2/1024)}' /proc/meminfo) * 9 / 10 ))
    mkdir -p /etc/slurm "$STATE/slurmctld" "$STATE/slurmd" "$RUN" "$LOG"
    sed -e "s|@HOST@|$host|g" -e "s|@CPUS@|$cpus|g" -e "s|@MEM@|$mem|g" \
        -e "s|@STATE@|$STATE|g" -e "s|@RUN@|$RUN|g" -e "s|@LOG@|$LOG|g" \
        "$HERE/slurm.conf.in" > "$CONF.tmp"
    if ! cmp -s "$CONF.tmp" "$CONF" 2>/dev/null; then
        mv "$CONF.tmp" "$CONF"
        CONF_CHANGED=1
    else
        rm -f "$CONF.tmp"
    fi
}

start_munge() {
    alive "$MUNGE_PID" && return
    mkdir -p /run/munge /var/log/munge /var/lib/munge
    chown munge:munge /run/munge /var/log/munge /var/lib/munge
    if [[ ! -s /etc/munge/munge.key ]]; then
        say "creating /etc/munge/munge.key"
        dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none
        chown munge:munge /etc/munge/munge.key
        chmod 400 /etc/munge/munge.key
    fi
    runuser -u munge -- /usr/sbin/munged
}

node_state() { sinfo -h -N -o '%T' 2>/dev/null | head -n1; }

up() {
    [[ $EUID -eq 0 ]] || die "run as root (it starts system daemons)"
    install_packages
    CONF_CHANGED=0
    write_conf
    start_munge
    if [[ $CONF_CHANGED == 1 ]] && alive "$RUN/slurmctld.pid"; then
        say "slurm.conf changed: restarting the daemons"
        down_slurm
    fi
    alive "$RUN/slurmctld.pid" || slurmctld
    alive "$RUN/slurmd.pid" || slurmd
    local state=""
    for _ in $(seq 60); do
        state="$(node_state)"
        case "$state" in
            idle*|mixed*|allocated*|completing*) say "up: node $(hostname -s) $state"; return 0 ;;
            down*|drain*) scontrol update nodename="$(hostname -s)" state=resume 2>/dev/null || true ;;
        esac
        sleep 1
    done
    die "node not ready after 60 s (state: ${state:-none}); see $LOG/slurmctld.log and $LOG/slurmd.log"
}

stop_pidfile() {
    local f="$1" pid
    alive "$f" || return 0
    pid="$(cat "$f")"
    kill "$pid"
    for _ in $(seq 20); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.5; done
    kill -9 "$pid" 2>/dev/null || true
}

down_slurm() {
    stop_pidfile "$RUN/slurmd.pid"
    stop_pidfile "$RUN/slurmctld.pid"
}

down() {
    down_slurm
    stop_pidfile "$MUNGE_PID"
    say "down"
}

status() {
    if scontrol ping >/dev/null 2>&1; then
        sinfo
        squeue
    else
        say "not running"
        return 1
    fi
}

case "${1:-}" in
    up) up ;;
    down) down ;;
    status) status ;;
    *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
