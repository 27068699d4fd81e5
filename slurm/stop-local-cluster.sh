#!/usr/bin/env bash
# Stops the single-node SLURM that slurm/start-local-cluster.sh started: each daemon by the pid in
# its pid file (nothing else is touched). Jobs still running are cancelled first. The state
# directory stays (pass --purge to delete it).
set -uo pipefail

DIR=${FLOWBENCH_SLURM_DIR:-/tmp/flowbench-slurm}
export SLURM_CONF=$DIR/etc/slurm.conf

if [ -f "$SLURM_CONF" ] && command -v scancel >/dev/null 2>&1; then
    timeout 10 scancel --user="$(id -un)" >/dev/null 2>&1 || true
fi

stop() {  # stop NAME: TERM the pid in run/NAME.pid, wait for it, KILL if it lingers
    local pidfile=$DIR/run/$1.pid pid
    [ -f "$pidfile" ] || return 0
    pid=$(cat "$pidfile" 2>/dev/null)
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill "$pid" 2>/dev/null
        for _ in $(seq 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
        kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null
    fi
    rm -f "$pidfile"
}

for daemon in slurmd slurmctld slurmdbd mariadbd munged; do
    stop "$daemon"
done
if [ "${1:-}" = "--purge" ]; then
    rm -rf "$DIR"
fi
echo "stop-local-cluster: stopped ($DIR)" >&2
