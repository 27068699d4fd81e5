#!/usr/bin/env bash
# Starts a single-node SLURM on this machine, for the tests and for trying the cluster path locally:
# slurmctld + slurmd (this host's cores and memory, fake GPUs) + slurmdbd with a private MariaDB, so
# that `sacct` (and with it submitit's job states) works. Installs the Debian packages if missing
# (needs root: apt-get, and the daemons run as root). No systemd: the daemons are started by hand.
#
# Everything lives in one private directory (FLOWBENCH_SLURM_DIR, default /tmp/flowbench-slurm):
# config, state, logs, pid files, the munge socket and the database. Running it again while the
# cluster is up does nothing. Stop it with slurm/stop-local-cluster.sh. It prints the line to use:
#     export SLURM_CONF=/tmp/flowbench-slurm/etc/slurm.conf
set -euo pipefail

DIR=${FLOWBENCH_SLURM_DIR:-/tmp/flowbench-slurm}
GPUS=${FLOWBENCH_SLURM_GPUS:-2}          # fake GPUs (character devices), so --gpus-per-node works
PORT_BASE=${FLOWBENCH_SLURM_PORT_BASE:-16817}  # slurmctld, slurmd, slurmdbd, mariadb: +0 +1 +2 +3
CONF=$DIR/etc/slurm.conf
export SLURM_CONF=$CONF

log() { echo "start-local-cluster: $*" >&2; }
die() { log "error: $*"; exit 1; }

[ "$(id -u)" = 0 ] || die "needs root (apt-get, and the SLURM daemons run as root)"

if [ -f "$CONF" ] && scontrol ping 2>/dev/null | grep -q UP && sinfo -h -o %T 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; then
    log "already running ($DIR)"
    echo "export SLURM_CONF=$CONF"
    exit 0
fi

install_packages() {
    local missing=()
    for cmd in slurmctld slurmd slurmdbd sbatch sacct munged mariadbd mariadb-install-db; do
        command -v "$cmd" >/dev/null 2>&1 || missing+=("$cmd")
    done
    [ ${#missing[@]} -eq 0 ] && return
    log "installing SLURM, munge and MariaDB (missing: ${missing[*]}) ..."
    export DEBIAN_FRONTEND=noninteractive
    # policy-rc.d: the packages must not try to start their own services (there is no systemd)
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends slurmctld slurmd slurm-client slurmdbd munge mariadb-server >/dev/null
    rm -f /usr/sbin/policy-rc.d
}
install_packages

# Anything left from an earlier start (daemons, pid files) goes first.
"$(dirname "$0")/stop-local-cluster.sh" >/dev/null 2>&1 || true

HOST=$(hostname -s)
CPUS=$(nproc)
MEM_MB=$(awk '/MemTotal/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)
mkdir -p "$DIR"/{etc,state,spool,log,run,dev,munge,mysql}
chmod 755 "$DIR"

# munge: a private key and socket
[ -f "$DIR/munge/munge.key" ] || dd if=/dev/urandom bs=1 count=1024 of="$DIR/munge/munge.key" status=none
chmod 700 "$DIR/munge"; chmod 400 "$DIR/munge/munge.key"
MUNGE_SOCKET=$DIR/munge/munge.socket
munged --force --key-file="$DIR/munge/munge.key" --socket="$MUNGE_SOCKET" \
    --pid-file="$DIR/run/munged.pid" --log-file="$DIR/log/munged.log" --seed-file="$DIR/munge/munge.seed"

# MariaDB for slurmdbd: private data dir, loopback only, no grant tables (a throwaway test database)
if [ ! -d "$DIR/mysql/mysql" ]; then
    mariadb-install-db --user=root --datadir="$DIR/mysql" --auth-root-authentication-method=normal \
        --skip-test-db >"$DIR/log/mariadb-install.log" 2>&1 || die "mariadb-install-db failed; see $DIR/log/mariadb-install.log"
fi
MYSQL_PORT=$((PORT_BASE + 3))
(setsid mariadbd --user=root --datadir="$DIR/mysql" --socket="$DIR/run/mysqld.sock" --port=$MYSQL_PORT \
    --bind-address=127.0.0.1 --skip-grant-tables --pid-file="$DIR/run/mariadbd.pid" \
    --log-error="$DIR/log/mariadb.log" </dev/null >/dev/null 2>&1 &)
for _ in $(seq 60); do [ -S "$DIR/run/mysqld.sock" ] && break; sleep 0.5; done
[ -S "$DIR/run/mysqld.sock" ] || die "MariaDB did not start; see $DIR/log/mariadb.log"

# fake GPUs: character devices with /dev/null's numbers, named in gres.conf
GPU_FILES=""
for i in $(seq 0 $((GPUS - 1))); do
    [ -e "$DIR/dev/nvidia$i" ] || mknod "$DIR/dev/nvidia$i" c 1 3
done
[ "$GPUS" -gt 0 ] && GPU_FILES="$DIR/dev/nvidia[0-$((GPUS - 1))]"

cat > "$CONF" <<EOF
ClusterName=flowbench
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort=$PORT_BASE
SlurmdPort=$((PORT_BASE + 1))
AuthType=auth/munge
CredType=cred/munge
# cred_expire=5: a requeued job would otherwise wait ~150 s before it may start again
AuthInfo=socket=$MUNGE_SOCKET,cred_expire=5
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1000
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0,bf_interval=1,sched_interval=1
ReturnToService=2
MinJobAge=300
KillWait=10
InactiveLimit=0
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=$((PORT_BASE + 2))
# the munge socket for connections to slurmdbd (AuthInfo's socket= covers the others)
AccountingStoragePass=$MUNGE_SOCKET
AccountingStorageTRES=gres/gpu
GresTypes=gpu
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM_MB Gres=gpu:$GPUS State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF
if [ "$GPUS" -gt 0 ]; then
    echo "NodeName=$HOST Name=gpu File=$GPU_FILES" > "$DIR/etc/gres.conf"
else
    : > "$DIR/etc/gres.conf"
fi

cat > "$DIR/etc/slurmdbd.conf" <<EOF
AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCKET
DbdHost=$HOST
DbdAddr=127.0.0.1
DbdPort=$((PORT_BASE + 2))
SlurmUser=root
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$MYSQL_PORT
StorageUser=root
StorageLoc=flowbench_slurm_acct
PidFile=$DIR/run/slurmdbd.pid
LogFile=$DIR/log/slurmdbd.log
EOF
chmod 600 "$DIR/etc/slurmdbd.conf"

slurmdbd  # reads slurmdbd.conf next to $SLURM_CONF
for _ in $(seq 30); do timeout 5 sacctmgr -n show cluster >/dev/null 2>&1 && break; sleep 0.5; done
timeout 5 sacctmgr -n show cluster >/dev/null 2>&1 || die "slurmdbd did not start; see $DIR/log/slurmdbd.log"
sacctmgr -i -Q add cluster flowbench >/dev/null 2>&1 || true

slurmctld -f "$CONF"
slurmd -f "$CONF"
for _ in $(seq 60); do
    state=$(sinfo -h -o %T 2>/dev/null | head -1 || true)
    case "$state" in idle|mixed|allocated) break ;; esac
    sleep 0.5
done
case "$state" in
    idle|mixed|allocated) ;;
    *) scontrol update nodename="$HOST" state=resume >/dev/null 2>&1 || true; sleep 1
       state=$(sinfo -h -o %T 2>/dev/null | head -1 || true)
       case "$state" in idle|mixed|allocated) ;; *) die "node is '$state'; see $DIR/log/slurmctld.log and slurmd.log" ;; esac ;;
esac
log "up: node $HOST, $CPUS CPUs, ${MEM_MB} MB, $GPUS fake GPUs, accounting on ($DIR)"
echo "export SLURM_CONF=$CONF"
