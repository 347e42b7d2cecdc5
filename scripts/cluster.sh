#!/usr/bin/env bash
# A single-node SLURM cluster on this machine, for `make test-cluster` (and for trying the SLURM launcher).
#
#     scripts/cluster.sh up       # install and start it unless `sinfo` already answers; one line says what is up
#     scripts/cluster.sh status   # one line: the node's state, its partition, whether sacct answers (exit 1: no cluster)
#     scripts/cluster.sh down     # stop the daemons `up` started (and only those)
#
# `up` needs root: it installs Debian's slurm-wlm and munge, plus slurmdbd and mariadb-server so that
# `sacct` answers (submitit polls sacct for every job's state; without accounting storage every poll
# warns "Bypassing sacct error", and a job that dies without a result is never seen to end). Packages
# come from the configured apt sources (apt-get update, then install --no-install-recommends), only when
# a program is missing. It writes, unless a file without this script's mark is already there (then that
# one is used as it is):
#   /etc/slurm/slurm.conf      this host (`hostname -s`), its CPUs and memory as `slurmd -C` reports them,
#                              one partition `debug`, select/cons_tres (cores and memory), proctrack/linuxproc,
#                              task/none, accounting through slurmdbd, KillWait=5 (a requeued or cancelled
#                              job gets SIGKILL 5 s after SIGTERM, which submitit ignores)
#   /etc/slurm/cgroup.conf     CgroupPlugin=cgroup/v1, no constraints (22.05 refuses CgroupPlugin=disabled)
#   /etc/slurm/slurmdbd.conf   MariaDB on this host, user slurm authenticated by its Unix socket (no password)
#   /etc/munge/munge.key       when absent (Debian's package usually creates it)
# State and logs go to Debian's paths: /var/lib/slurm/{slurmctld,slurmd}, /var/log/slurm/*.log,
# /var/lib/mysql (database slurm_acct_db), /run/*.pid. The daemons it starts are listed, with their
# process ids, in /run/ibci-cluster.started, which `down` reads. Every wait is bounded (UP_TIMEOUT seconds
# for the node to come up, 60 by default). Exit status: 0 up (or down), 1 a failure (one line saying what,
# then the tail of the log concerned), 2 a usage error.
set -euo pipefail

CONF=/etc/slurm/slurm.conf
CGROUP=/etc/slurm/cgroup.conf
DBD=/etc/slurm/slurmdbd.conf
KEY=/etc/munge/munge.key
STARTED=/run/ibci-cluster.started
MARK="# Written by ibci's scripts/cluster.sh (a single-node test cluster); delete this line to keep your edits."
PARTITION=debug
CLUSTER=ibci
UP_TIMEOUT=${UP_TIMEOUT:-60}
PACKAGES=(slurm-wlm munge slurmdbd mariadb-server)
PROGRAMS=(sinfo sbatch sacct sacctmgr scontrol slurmctld slurmd slurmdbd munged mungekey mariadbd mysqladmin)
HOST=$(hostname -s)

say() { echo "cluster: $*"; }
fail() {  # fail MESSAGE [LOG]: one line, then the log's tail
    echo "cluster: error: $1" >&2
    if [[ -n "${2:-}" && -r "$2" ]]; then
        echo "--- last lines of $2:" >&2
        tail -n 20 "$2" >&2
    fi
    exit 1
}

answers() { timeout 15 sinfo -h -o %T >/dev/null 2>&1; }
node_state() { timeout 15 sinfo -h -N -n "$HOST" -o %T 2>/dev/null | head -n 1 || true; }
ours() { [[ ! -e "$1" ]] || head -n 1 "$1" | grep -qxF "$MARK"; }

alive() {  # alive NAME PID: PID runs the program NAME
    [[ -n "${2:-}" ]] && [[ "$(cat "/proc/$2/comm" 2>/dev/null)" == "${1:0:15}" ]]
}

pid_of() {  # pid_of NAME PIDFILE: the running daemon's pid, or nothing
    local pid
    pid=$(cat "$2" 2>/dev/null || true)
    if alive "$1" "$pid"; then echo "$pid"; fi
}

wait_for() {  # wait_for SECONDS WHAT LOG COMMAND...: run COMMAND every half second until it succeeds
    local seconds=$1 what=$2 log=$3
    shift 3
    local deadline=$((SECONDS + seconds))
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || fail "$what did not come up within ${seconds} s" "$log"
        sleep 0.5
    done
}

running() { [[ -n "$(pid_of "$1" "$2")" ]]; }

started=()
record() {  # record NAME PIDFILE: note a daemon this script started (name, pid, pid file), for `down`
    local pid
    pid=$(pid_of "$1" "$2")
    [[ -n "$pid" ]] || return 0
    echo "$1 $pid $2" >>"$STARTED"
    started+=("$1")
}

detached() {  # detached COMMAND...: run it with /dev/null as its stdin, stdout and stderr and no other descriptor of ours
    (
        for fd in /proc/$BASHPID/fd/*; do
            fd=${fd##*/}
            if ((fd > 2)); then eval "exec $fd>&-" 2>/dev/null || true; fi
        done
        exec "$@"
    ) </dev/null >/dev/null 2>&1
}

need_root() {
    [[ $(id -u) -eq 0 ]] || fail "$1 needs root (it installs packages and starts daemons); run it as root, e.g. with sudo"
}

install_packages() {
    local missing=() p
    for p in "${PROGRAMS[@]}"; do
        command -v "$p" >/dev/null 2>&1 || [[ -x "/usr/sbin/$p" ]] || missing+=("$p")
    done
    ((${#missing[@]})) || return 0
    command -v apt-get >/dev/null || fail "missing ${missing[*]} and no apt-get to install ${PACKAGES[*]}"
    local log t0=$SECONDS
    log=$(mktemp /tmp/ibci-cluster-apt.XXXXXX.log)
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >"$log" 2>&1 || fail "apt-get update failed" "$log"
    apt-get install -y -q --no-install-recommends "${PACKAGES[@]}" >>"$log" 2>&1 \
        || fail "apt-get install ${PACKAGES[*]} failed" "$log"
    rm -f "$log"
    installed="; installed ${PACKAGES[*]} in $((SECONDS - t0)) s"
}

write_if_ours() {  # write_if_ours PATH MODE OWNER: stdin becomes PATH, unless PATH is someone else's
    local path=$1 mode=$2 owner=$3 tmp
    if ! ours "$path"; then
        cat >/dev/null
        kept+=("$path")
        return 0
    fi
    mkdir -p "$(dirname "$path")"
    tmp=$(mktemp "$path.XXXXXX")
    { echo "$MARK"; cat; } >"$tmp"
    chmod "$mode" "$tmp"
    chown "$owner" "$tmp"
    mv -f "$tmp" "$path"
}

configure() {
    local node
    # The node as slurmd sees it (CPUs, sockets, cores, threads, RealMemory); its own answer, so never drained
    # for claiming more than it has. 127.0.0.1: this host's name need not resolve.
    node=$(slurmd -C | head -n 1)
    [[ "$node" == NodeName=* ]] || fail "slurmd -C printed no node line: $node"
    write_if_ours "$CONF" 644 root:root <<EOF
ClusterName=$CLUSTER
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=slurm
AuthType=auth/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1024
SchedulerType=sched/backfill
ReturnToService=2
JobRequeue=1
KillWait=5
MailProg=/bin/true
StateSaveLocation=/var/lib/slurm/slurmctld
SlurmdSpoolDir=/var/lib/slurm/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
JobAcctGatherType=jobacct_gather/linux
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
JobCompType=jobcomp/none
$node NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=$PARTITION Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF
    write_if_ours "$CGROUP" 644 root:root <<EOF
CgroupPlugin=cgroup/v1
EOF
    write_if_ours "$DBD" 600 slurm:slurm <<EOF
AuthType=auth/munge
DbdHost=localhost
SlurmUser=slurm
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StorageLoc=slurm_acct_db
LogFile=/var/log/slurm/slurmdbd.log
PidFile=/run/slurmdbd.pid
EOF
    if [[ ! -s "$KEY" ]]; then
        mungekey --create --keyfile="$KEY" >/dev/null 2>&1 || dd if=/dev/urandom of="$KEY" bs=1024 count=1 2>/dev/null
    fi
    chown munge:munge "$KEY"
    chmod 400 "$KEY"
    install -d -o slurm -g slurm /var/lib/slurm/slurmctld /var/log/slurm
    install -d /var/lib/slurm/slurmd
    install -d -o munge -g munge -m 755 /run/munge
    install -d -o munge -g munge -m 700 /var/log/munge
    install -d -o mysql -g root /run/mysqld
    install -d -o mysql -g adm -m 2750 /var/log/mysql
}

start_munge() {
    [[ -z "$(pid_of munged /run/munge/munged.pid)" ]] || return 0
    detached start-stop-daemon --start --quiet --chuid munge --exec /usr/sbin/munged \
        || fail "munged did not start" /var/log/munge/munged.log
    wait_for 10 munged /var/log/munge/munged.log bash -c 'munge -n | unmunge'
    record munged /run/munge/munged.pid
}

start_mariadb() {
    if [[ -z "$(pid_of mariadbd /run/mysqld/mysqld.pid)" ]] && ! mysqladmin --silent ping >/dev/null 2>&1; then
        detached start-stop-daemon --start --quiet --background --exec /usr/sbin/mariadbd -- --user=mysql \
            --log-error=/var/log/mysql/error.log || fail "mariadbd did not start"
        wait_for 30 mariadbd /var/log/mysql/error.log mysqladmin --silent ping
        record mariadbd /run/mysqld/mysqld.pid
    fi
    # slurmdbd's database; its user is the Unix user slurm (slurmdbd runs as it), so no password to keep.
    mysql -e "CREATE DATABASE IF NOT EXISTS slurm_acct_db;
              CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED VIA unix_socket;
              GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';" \
        || fail "could not create the database slurm_acct_db" /var/log/mysql/error.log
}

start_slurm() {  # start_slurm NAME LOG
    [[ -z "$(pid_of "$1" "/run/$1.pid")" ]] || return 0
    detached "/usr/sbin/$1" || fail "$1 did not start" "$2"
    wait_for 10 "$1" "$2" running "$1" "/run/$1.pid"  # a stale pid file is not enough
    record "$1" "/run/$1.pid"
}

up() {
    local state
    if answers; then
        state=$(node_state)
        case "$state" in
            idle | mixed | allocated | completing)  # responding (a trailing * would say it is not)
                say "already up ($(summary)); nothing to do"
                return 0
                ;;
        esac
    fi
    need_root "scripts/cluster.sh up"
    installed="" kept=()
    install_packages
    configure
    start_munge
    start_mariadb
    start_slurm slurmdbd /var/log/slurm/slurmdbd.log
    wait_for 30 slurmdbd /var/log/slurm/slurmdbd.log sacctmgr -n list cluster
    if [[ -z "$(sacctmgr -n -P list cluster format=cluster | grep -xF "$CLUSTER" || true)" ]]; then
        sacctmgr -i add cluster "$CLUSTER" >/dev/null || fail "sacctmgr could not add cluster $CLUSTER"
    fi
    start_slurm slurmctld /var/log/slurm/slurmctld.log
    start_slurm slurmd /var/log/slurm/slurmd.log
    local deadline=$((SECONDS + UP_TIMEOUT))
    while :; do
        state=$(node_state)
        case "$state" in
            idle | mixed | allocated) break ;;
            down* | drain*)  # e.g. left down by an earlier run of this script; its config is the one just written
                if ours "$CONF"; then scontrol update nodename="$HOST" state=resume >/dev/null 2>&1 || true; fi ;;
        esac
        ((SECONDS < deadline)) || fail "node $HOST is ${state:-not known to slurmctld} after ${UP_TIMEOUT} s" \
            /var/log/slurm/slurmd.log
        sleep 0.5
    done
    local extra=""
    ((${#started[@]})) && extra="; started ${started[*]}"
    ((${#kept[@]})) && extra+="; kept the existing ${kept[*]}"
    say "up ($(summary))$installed$extra"
}

summary() {  # the node, its partition and accounting, in a few words
    local line acct="sacct answers"
    line=$(timeout 15 sinfo -h -N -n "$HOST" -o "node %N %T, %c CPUs, %m MB, partition %P" 2>/dev/null | head -n 1)
    timeout 15 sacct -n -X -S now >/dev/null 2>&1 || acct="sacct does not answer"
    echo "${line:-node $HOST unknown}, $acct"
}

status() {
    if ! answers; then
        say "down (sinfo does not answer)"
        return 1
    fi
    say "up ($(summary))"
}

down() {
    if [[ ! -s "$STARTED" ]]; then
        say "nothing to stop (scripts/cluster.sh up started no daemon that is still recorded)"
        return 0
    fi
    need_root "scripts/cluster.sh down"
    local name pid pidfile stopped=() lines
    mapfile -t lines < <(tac "$STARTED")  # the last started first: slurmd, slurmctld, slurmdbd, mariadbd, munged
    for line in "${lines[@]}"; do
        read -r name pid pidfile <<<"$line"
        alive "$name" "$pid" || continue
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 40); do alive "$name" "$pid" || break; sleep 0.5; done
        if alive "$name" "$pid"; then kill -KILL "$pid" 2>/dev/null || true; fi
        # slurmctld leaves its pid file behind, and Debian's prerm then runs scancel against no controller
        if [[ -n "$pidfile" && "$(cat "$pidfile" 2>/dev/null)" == "$pid" ]]; then rm -f "$pidfile"; fi
        stopped+=("$name")
    done
    rm -f "$STARTED"
    say "down (stopped ${stopped[*]:-nothing still running})"
}

case "${1:-}" in
    up) up ;;
    down) down ;;
    status) status ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' ;;
    *) echo "usage: scripts/cluster.sh up|down|status (scripts/cluster.sh --help says more)" >&2; exit 2 ;;
esac
