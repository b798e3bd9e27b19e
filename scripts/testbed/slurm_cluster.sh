#!/usr/bin/env bash
# A real single-node SLURM cluster with accounting, for the tests and for trying the launcher.
#
#   bash scripts/testbed/slurm_cluster.sh up       # install (Debian, as root) and start; idempotent
#   bash scripts/testbed/slurm_cluster.sh status   # which daemons run; sinfo; squeue
#   bash scripts/testbed/slurm_cluster.sh down     # cancel jobs, stop the daemons this script started
#   source "${SLURM_DIR:-/tmp/var-scaling-slurm}/env.sh"   # exports SLURM_CONF for sbatch & co
#
# Daemons: munged (auth), mariadbd + slurmdbd (accounting, so `sacct` and submitit see real
# job states such as CANCELLED), slurmctld (controller), slurmd (the one compute node).
# No systemd: each daemon is started directly and its PID recorded under $SLURM_DIR;
# `down` stops those PIDs only.
#
# Environment:
#   SLURM_DIR   state, logs, configs, PID files, env.sh (default /tmp/var-scaling-slurm)
#   SLURM_CPUS  CPUs the node advertises (default: max(nproc, 8)). More than the real cores
#               lets several 1-CPU jobs (tiny test runs) share a small machine.
#   SLURM_PARTITION  partition name (default debug)
set -euo pipefail

SLURM_DIR=${SLURM_DIR:-/tmp/var-scaling-slurm}
PARTITION=${SLURM_PARTITION:-debug}
export SLURM_CONF="$SLURM_DIR/slurm.conf"
PACKAGES="slurmctld slurmd slurm-client slurmdbd munge mariadb-server"
DAEMONS="munged mariadbd slurmdbd slurmctld slurmd"   # start order; `down` reverses it

log() { echo "slurm_cluster: $*" >&2; }
die() { log "error: $*"; exit 1; }

# pid_alive NAME: the PID recorded for NAME runs (and is not a zombie)
pid_alive() {
  local f="$SLURM_DIR/$1.pid" pid
  [ -s "$f" ] || return 1
  pid=$(cat "$f")
  [ -e "/proc/$pid" ] && ! grep -q '^State:[[:space:]]*Z' "/proc/$pid/status" 2>/dev/null
}

# wait_for SECONDS COMMAND...: retry COMMAND every 0.2 s until it succeeds
wait_for() {
  local tries=$(( $1 * 5 )); shift
  for _ in $(seq "$tries"); do "$@" >/dev/null 2>&1 && return 0; sleep 0.2; done
  return 1
}

munge_ok() { munge -n | unmunge; }
mariadb_ok() { mariadb-admin ping; }
dbd_ok() { sacctmgr -n list cluster; }
node_idle() { sinfo -h -o %T 2>/dev/null | grep -Eq '^(idle|mixed|allocated)$'; }

install_packages() {
  if dpkg -s $PACKAGES >/dev/null 2>&1; then return 0; fi
  [ "$(id -u)" = 0 ] || die "packages missing ($PACKAGES) and not root: cannot apt-get install"
  command -v apt-get >/dev/null || die "packages missing and no apt-get (not Debian?)"
  log "installing $PACKAGES (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq || die "apt-get update failed"
  # the packages' postinst scripts try systemctl/invoke-rc.d; without systemd that is a no-op
  apt-get install -y -qq --no-install-recommends $PACKAGES >/dev/null || die "apt-get install failed"
}

write_configs() {
  mkdir -p "$SLURM_DIR"/{state,spool,log}
  local cpus real_mem mem override=""
  cpus=${SLURM_CPUS:-$(( $(nproc) > 8 ? $(nproc) : 8 ))}
  # advertising more CPUs than the hardware has needs config_overrides, else slurmd drains
  [ "$cpus" -gt "$(nproc)" ] && override="SlurmdParameters=config_overrides"
  real_mem=$(slurmd -C | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p')
  mem=$(( real_mem > 2048 ? real_mem - 1024 : real_mem ))
  cat > "$SLURM_CONF" <<EOF
# written by scripts/testbed/slurm_cluster.sh
ClusterName=varscaling
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# a requeued job may restart only after the credential expiry (default 120 s): keep it short
AuthInfo=cred_expire=5
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
SchedulerParameters=bf_interval=1,sched_interval=1
ReturnToService=2
JobRequeue=1
StateSaveLocation=$SLURM_DIR/state
SlurmdSpoolDir=$SLURM_DIR/spool
SlurmctldPidFile=$SLURM_DIR/slurmctld.pid
SlurmdPidFile=$SLURM_DIR/slurmd.pid
SlurmctldLogFile=$SLURM_DIR/log/slurmctld.log
SlurmdLogFile=$SLURM_DIR/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# keep finished jobs visible to squeue/scontrol for 5 minutes
MinJobAge=300
# submitit ignores SIGTERM at preemption; SIGKILL follows KillWait seconds later
KillWait=5
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
JobAcctGatherType=jobacct_gather/linux
JobCompType=jobcomp/none
$override
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=$PARTITION Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
  cat > "$SLURM_DIR/slurmdbd.conf" <<EOF
# written by scripts/testbed/slurm_cluster.sh
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
SlurmUser=root
LogFile=$SLURM_DIR/log/slurmdbd.log
PidFile=$SLURM_DIR/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=varscaling
StorageLoc=varscaling_acct_db
EOF
  chmod 600 "$SLURM_DIR/slurmdbd.conf"   # slurmdbd refuses a conf others can read
  echo "export SLURM_CONF=$SLURM_CONF" > "$SLURM_DIR/env.sh"
}

start_munge() {
  if munge_ok >/dev/null 2>&1; then
    # already running (ours from an earlier `up`, or the system's): record it if we can
    [ -s /run/munge/munged.pid ] && cp /run/munge/munged.pid "$SLURM_DIR/munged.pid"
    return 0
  fi
  mkdir -p /run/munge /var/log/munge /var/lib/munge /etc/munge
  chown munge:munge /run/munge /var/log/munge /var/lib/munge
  chmod 0755 /run/munge
  if [ ! -s /etc/munge/munge.key ]; then
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
  fi
  chown munge:munge /etc/munge/munge.key
  chmod 0400 /etc/munge/munge.key
  runuser -u munge -- /usr/sbin/munged     # daemonises; writes /run/munge/munged.pid
  wait_for 10 munge_ok || die "munged did not start (see /var/log/munge/munged.log)"
  cp /run/munge/munged.pid "$SLURM_DIR/munged.pid"
}

start_mariadb() {
  mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld
  if ! mariadb_ok >/dev/null 2>&1; then
    # no TCP: slurmdbd reaches it through the local socket
    nohup /usr/sbin/mariadbd --user=mysql --skip-networking --pid-file=/run/mysqld/mysqld.pid \
      > "$SLURM_DIR/log/mariadb.log" 2>&1 < /dev/null &
    wait_for 30 mariadb_ok || die "mariadbd did not start (see $SLURM_DIR/log/mariadb.log)"
  fi
  [ -s /run/mysqld/mysqld.pid ] && cp /run/mysqld/mysqld.pid "$SLURM_DIR/mariadbd.pid"
  mariadb -e "CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'varscaling';
              GRANT ALL ON varscaling_acct_db.* TO 'slurm'@'localhost'; FLUSH PRIVILEGES;" \
    || die "could not create the accounting database user"
}

start_slurmdbd() {
  if ! pid_alive slurmdbd; then
    slurmdbd    # reads slurmdbd.conf beside $SLURM_CONF; daemonises
  fi
  wait_for 30 dbd_ok || die "slurmdbd does not answer (see $SLURM_DIR/log/slurmdbd.log)"
  sacctmgr -i add cluster varscaling >/dev/null 2>&1 || true
}

start_slurmctld() {
  pid_alive slurmctld || slurmctld
  wait_for 30 scontrol ping || die "slurmctld does not answer (see $SLURM_DIR/log/slurmctld.log)"
}

start_slurmd() {
  pid_alive slurmd || slurmd -N localhost   # node name independent of `hostname`
  if ! wait_for 30 node_idle; then
    sinfo -N -l >&2 || true
    die "node not ready (see $SLURM_DIR/log/slurmd.log)"
  fi
}

is_up() {
  pid_alive slurmctld && pid_alive slurmd && pid_alive slurmdbd \
    && scontrol ping >/dev/null 2>&1 && node_idle
}

cmd_up() {
  [ "$(id -u)" = 0 ] || die "must run as root (starts munged, MariaDB and the SLURM daemons)"
  if [ -s "$SLURM_CONF" ] && is_up; then
    log "already up (SLURM_CONF=$SLURM_CONF)"
    return 0
  fi
  local t0=$SECONDS
  install_packages
  write_configs
  start_munge
  start_mariadb
  start_slurmdbd
  start_slurmctld
  start_slurmd
  log "up in $(( SECONDS - t0 )) s; source $SLURM_DIR/env.sh"
  sinfo
}

cmd_down() {
  if pid_alive slurmctld; then
    # jobs first: a job step left running when munged stops ignores SIGTERM
    scancel --full --user="$(id -un)" 2>/dev/null || true
    for _ in $(seq 60); do
      [ -z "$(squeue -h 2>/dev/null)" ] && ! pgrep -x slurmstepd >/dev/null && break
      sleep 0.5
    done
  fi
  local d pid
  for d in $(echo $DAEMONS | tr ' ' '\n' | tac); do
    pid_alive "$d" || { rm -f "$SLURM_DIR/$d.pid"; continue; }
    pid=$(cat "$SLURM_DIR/$d.pid")
    kill "$pid" 2>/dev/null && log "stopped $d ($pid)"
    for i in $(seq 100); do   # up to 20 s, SIGKILL after 15 s
      pid_alive "$d" || break
      [ "$i" = 75 ] && kill -9 "$pid" 2>/dev/null
      sleep 0.2
    done
    rm -f "$SLURM_DIR/$d.pid"
  done
}

cmd_status() {
  local d state rc=0
  for d in $DAEMONS; do
    if pid_alive "$d"; then state="running (pid $(cat "$SLURM_DIR/$d.pid"))"; else state="stopped"; rc=1; fi
    printf '%-10s %s\n' "$d" "$state"
  done
  if [ "$rc" = 0 ]; then
    echo "SLURM_CONF=$SLURM_CONF"
    sinfo
    squeue
  fi
  return $rc
}

case "${1:-}" in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  *) echo "usage: $0 up|down|status   (SLURM_DIR=${SLURM_DIR})" >&2; exit 2 ;;
esac
