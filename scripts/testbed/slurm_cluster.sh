#!/usr/bin/env bash
# A real single-node SLURM cluster with accounting, for the tests and for trying the launcher.
#
#   bash scripts/testbed/slurm_cluster.sh up       # install (Debian, as root) and start; idempotent
#   bash scripts/testbed/slurm_cluster.sh status   # which daemons run; sinfo; squeue
#   bash scripts/testbed/slurm_cluster.sh down     # cancel jobs, stop the daemons this script started
#   source "${SLURM_DIR:-/tmp/var-scaling-slurm}/env.sh"   # exports SLURM_CONF for sbatch & co
#
#   bash scripts/testbed/slurm_cluster.sh up --nodes 3     # a multi-node cluster (below)
#   bash scripts/testbed/slurm_cluster.sh status --nodes 3
#   bash scripts/testbed/slurm_cluster.sh kill-node vsnode2 # a node lost: every process on it killed
#   bash scripts/testbed/slurm_cluster.sh down --nodes 3
#   source "${SLURM_NODES_DIR:-/tmp/var-scaling-slurm-nodes}/env.sh"
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
#
# Multi-node mode (`--nodes N`, N >= 2): a second, independent cluster that runs beside the
# single-node one (its own ports, munged, MariaDB, state folder). Each compute node is one
# slurmd in its own network namespace (veth pair to a bridge in the host namespace, its own
# address) and its own UTS namespace (its own hostname), so jobs on different nodes talk over
# addresses, as on a real cluster. Node names resolve from every namespace through lines this
# script adds to /etc/hosts (and `down` removes). All traffic stays on the bridge's subnet.
#   SLURM_NODES_DIR     state folder (default /tmp/var-scaling-slurm-nodes)
#   SLURM_NODES_SUBNET  first three octets of the bridge's /24 (default 10.77.0): the
#                       controller is .1, node k is .(10+k)
#   SLURM_NODES_CPUS    CPUs each node advertises (default 8: the tests' jobs run together)
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

# conf_common [AUTHINFO_MORE]: the slurm.conf lines both clusters share (users, munge
# authentication, process tracking, the scheduler, requeue); AUTHINFO_MORE extends AuthInfo
conf_common() {
  cat <<EOF
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# a requeued job may restart only after the credential expiry (default 120 s): keep it short
AuthInfo=cred_expire=5${1:-}
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
SchedulerParameters=bf_interval=1,sched_interval=1
ReturnToService=2
JobRequeue=1
EOF
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
$(conf_common)
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

# start_controller CLUSTER: slurmdbd (accounting, with CLUSTER registered) then slurmctld,
# each started unless its recorded PID runs, each waited for; both clusters start this way
start_controller() {
  if ! pid_alive slurmdbd; then
    slurmdbd    # reads slurmdbd.conf beside $SLURM_CONF; daemonises
  fi
  wait_for 30 dbd_ok || die "slurmdbd does not answer (see $SLURM_DIR/log/slurmdbd.log)"
  sacctmgr -i add cluster "$1" >/dev/null 2>&1 || true
  pid_alive slurmctld || slurmctld
  wait_for 30 scontrol ping || die "slurmctld does not answer (see $SLURM_DIR/log/slurmctld.log)"
}

# nodes_ready SECONDS CHECK WHY: wait until CHECK says the nodes take jobs, else show them
# and stop with WHY (which logs to read)
nodes_ready() {
  if ! wait_for "$1" "$2"; then
    sinfo -N -l >&2 || true
    die "$3"
  fi
}

start_slurmd() {
  pid_alive slurmd || slurmd -N localhost   # node name independent of `hostname`
  nodes_ready 30 node_idle "node not ready (see $SLURM_DIR/log/slurmd.log)"
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
  start_controller varscaling
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

# ------------------------------------------------------------------- multi-node mode
MN_TAG="var-scaling-slurm-nodes"   # marks the /etc/hosts lines this mode adds
MN_BRIDGE=vsmn-br                  # bridge in the host namespace
MN_PORTS="6827 6828 6829"          # slurmctld, slurmd, slurmdbd (the single-node cluster: 6817-6819)

mn_setup() {   # mn_setup NODES: variables of the multi-node cluster in $SLURM_NODES_DIR
  SLURM_DIR=${SLURM_NODES_DIR:-/tmp/var-scaling-slurm-nodes}
  export SLURM_CONF="$SLURM_DIR/slurm.conf"
  MN_NODES=$1
  MN_SUBNET=${SLURM_NODES_SUBNET:-10.77.0}
  MN_CTL_ADDR="$MN_SUBNET.1"
  MN_MUNGE="$SLURM_DIR/munge"
  MN_SOCKET="$MN_MUNGE/munge.socket"
  MN_DB_SOCKET="$SLURM_DIR/mysql-run/mysqld.sock"
  # slurmdbd's MariaDB client reaches our own server through this socket
  export MYSQL_UNIX_PORT="$MN_DB_SOCKET"
}
mn_node() { echo "vsnode$1"; }          # node k's name (and hostname in its namespace)
mn_ns() { echo "vsmn-n$1"; }            # its network namespace
mn_addr() { echo "$MN_SUBNET.$(( 10 + $1 ))"; }
mn_munge_ok() { munge -n -S "$MN_SOCKET" | unmunge -S "$MN_SOCKET"; }
mn_mariadb_ok() { mariadb-admin --socket="$MN_DB_SOCKET" ping; }
mn_nodes_idle() {
  [ "$(sinfo -h -N -o '%N %T' 2>/dev/null | grep -Ec ' (idle|mixed|allocated)$')" -ge "$MN_NODES" ]
}
mn_in_ns() { local k=$1; shift; nsenter --net="/run/netns/$(mn_ns "$k")" "$@"; }

mn_network() {
  if ! ip link show "$MN_BRIDGE" >/dev/null 2>&1; then
    ip route | grep -q "^$MN_SUBNET\." && die "subnet $MN_SUBNET.0/24 is in use here (set SLURM_NODES_SUBNET)"
    ip link add "$MN_BRIDGE" type bridge
    ip addr add "$MN_CTL_ADDR/24" dev "$MN_BRIDGE"
    ip link set "$MN_BRIDGE" up
  fi
  local k ns
  for k in $(seq "$MN_NODES"); do
    ns=$(mn_ns "$k")
    if [ -e "/run/netns/$ns" ]; then
      ip link set "vsmn-h$k" up   # a node brought back after kill-node
      continue
    fi
    ip netns add "$ns"
    ip link add "vsmn-h$k" type veth peer name "vsmn-p$k"
    ip link set "vsmn-p$k" netns "$ns"
    ip link set "vsmn-h$k" master "$MN_BRIDGE"
    ip link set "vsmn-h$k" up
    mn_in_ns "$k" ip addr add "$(mn_addr "$k")/24" dev "vsmn-p$k"
    mn_in_ns "$k" ip link set "vsmn-p$k" up
    mn_in_ns "$k" ip link set lo up
  done
  # names resolvable from every namespace (they share /etc/hosts): rewrite in place, as
  # /etc/hosts may be a mount point
  local lines="" tmp
  for k in $(seq "$MN_NODES"); do lines+="$(mn_addr "$k") $(mn_node "$k")  # $MN_TAG"$'\n'; done
  tmp=$(grep -v "# $MN_TAG\$" /etc/hosts || true)
  printf '%s\n%s' "$tmp" "$lines" > /etc/hosts
}

mn_write_configs() {
  mkdir -p "$SLURM_DIR"/{state,log}
  local host cpus real_mem mem k
  host=$(hostname -s)   # slurmctld and slurmdbd check that they run on the host named here
  cpus=${SLURM_NODES_CPUS:-8}
  real_mem=$(slurmd -C | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p')
  mem=$(( real_mem / MN_NODES ))
  read -r ctl_port d_port dbd_port <<< "$MN_PORTS"
  cat > "$SLURM_CONF" <<CONF
# written by scripts/testbed/slurm_cluster.sh (multi-node mode, $MN_NODES nodes)
ClusterName=varscalingnodes
SlurmctldHost=$host($MN_CTL_ADDR)
SlurmctldPort=$ctl_port
SlurmdPort=$d_port
$(conf_common ",socket=$MN_SOCKET")
# a lost node is noticed within seconds (slurmctld pings every SlurmdTimeout/3); not
# shorter: on a loaded machine a slow answer would be taken for a lost node
SlurmdTimeout=20
MessageTimeout=10
StateSaveLocation=$SLURM_DIR/state
SlurmdSpoolDir=$SLURM_DIR/spool-%n
SlurmctldPidFile=$SLURM_DIR/slurmctld.pid
SlurmdPidFile=$SLURM_DIR/slurmd-%n.pid
SlurmctldLogFile=$SLURM_DIR/log/slurmctld.log
SlurmdLogFile=$SLURM_DIR/log/slurmd-%n.log
SlurmctldDebug=info
SlurmdDebug=info
MinJobAge=300
KillWait=5
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=$MN_CTL_ADDR
AccountingStoragePort=$dbd_port
# the munge socket slurmctld uses to reach slurmdbd
AccountingStoragePass=$MN_SOCKET
JobAcctGatherType=jobacct_gather/linux
JobCompType=jobcomp/none
SlurmdParameters=config_overrides
CONF
  for k in $(seq "$MN_NODES"); do
    echo "NodeName=$(mn_node "$k") NodeAddr=$(mn_addr "$k") CPUs=$cpus RealMemory=$mem State=UNKNOWN" >> "$SLURM_CONF"
  done
  echo "PartitionName=$PARTITION Nodes=ALL Default=YES MaxTime=INFINITE State=UP" >> "$SLURM_CONF"
  cat > "$SLURM_DIR/slurmdbd.conf" <<CONF
# written by scripts/testbed/slurm_cluster.sh (multi-node mode)
AuthType=auth/munge
AuthInfo=socket=$MN_SOCKET
DbdHost=$host
DbdAddr=$MN_CTL_ADDR
DbdPort=$dbd_port
SlurmUser=root
LogFile=$SLURM_DIR/log/slurmdbd.log
PidFile=$SLURM_DIR/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=varscaling
StorageLoc=varscaling_nodes_acct_db
CONF
  chmod 600 "$SLURM_DIR/slurmdbd.conf"
  echo "export SLURM_CONF=$SLURM_CONF" > "$SLURM_DIR/env.sh"
  echo "$MN_NODES" > "$SLURM_DIR/nodes"
}

mn_start_munge() {   # a munged of our own: own key, own socket
  mn_munge_ok >/dev/null 2>&1 && return 0
  mkdir -p "$MN_MUNGE"
  chown munge:munge "$MN_MUNGE"
  chmod 0711 "$MN_MUNGE"   # clients of every user reach the socket
  if [ ! -s "$MN_MUNGE/munge.key" ]; then
    dd if=/dev/urandom of="$MN_MUNGE/munge.key" bs=1 count=1024 status=none
  fi
  chown munge:munge "$MN_MUNGE/munge.key"
  chmod 0400 "$MN_MUNGE/munge.key"
  runuser -u munge -- /usr/sbin/munged --socket="$MN_SOCKET" --key-file="$MN_MUNGE/munge.key" \
    --pid-file="$MN_MUNGE/munged.pid" --log-file="$MN_MUNGE/munged.log" \
    --seed-file="$MN_MUNGE/munged.seed"
  wait_for 10 mn_munge_ok || die "munged did not start (see $MN_MUNGE/munged.log)"
  cp "$MN_MUNGE/munged.pid" "$SLURM_DIR/munged.pid"
}

mn_start_mariadb() {   # a MariaDB server of our own: own data folder, socket only
  if ! mn_mariadb_ok >/dev/null 2>&1; then
    mkdir -p "$SLURM_DIR/mysql" "$SLURM_DIR/mysql-run"
    chown mysql:mysql "$SLURM_DIR/mysql" "$SLURM_DIR/mysql-run"
    if [ ! -d "$SLURM_DIR/mysql/mysql" ]; then
      mariadb-install-db --no-defaults --datadir="$SLURM_DIR/mysql" --user=mysql \
        --auth-root-authentication-method=socket --skip-test-db \
        > "$SLURM_DIR/log/mariadb-install.log" 2>&1 \
        || die "mariadb-install-db failed (see $SLURM_DIR/log/mariadb-install.log)"
    fi
    nohup /usr/sbin/mariadbd --no-defaults --user=mysql --datadir="$SLURM_DIR/mysql" \
      --socket="$MN_DB_SOCKET" --pid-file="$SLURM_DIR/mysql-run/mariadbd.pid" --skip-networking \
      > "$SLURM_DIR/log/mariadb.log" 2>&1 < /dev/null &
    echo $! > "$SLURM_DIR/mariadbd.pid"
    wait_for 30 mn_mariadb_ok || die "mariadbd did not start (see $SLURM_DIR/log/mariadb.log)"
  fi
  mariadb --socket="$MN_DB_SOCKET" -e "
    CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'varscaling';
    GRANT ALL ON varscaling_nodes_acct_db.* TO 'slurm'@'localhost'; FLUSH PRIVILEGES;" \
    || die "could not create the accounting database user"
}

mn_slurmd_alive() { pid_alive "slurmd-$(mn_node "$1")"; }

mn_start_slurmd() {   # mn_start_slurmd K: node K's slurmd, inside its namespaces
  local k=$1 name
  name=$(mn_node "$k")
  mn_slurmd_alive "$k" && return 0
  # only the network namespace is entered (`ip netns exec` would remount /sys and hide the
  # cgroup tree slurmd reads); a new UTS namespace gives the node its own hostname
  mn_in_ns "$k" unshare --uts sh -c "hostname '$name' && exec slurmd -N '$name'"
}

mn_is_up() {
  local k
  pid_alive slurmctld && pid_alive slurmdbd || return 1
  for k in $(seq "$MN_NODES"); do mn_slurmd_alive "$k" || return 1; done
  scontrol ping >/dev/null 2>&1 && mn_nodes_idle
}

mn_up() {
  [ "$(id -u)" = 0 ] || die "must run as root (makes network namespaces, starts daemons)"
  [ -s "$SLURM_DIR/nodes" ] && [ "$(cat "$SLURM_DIR/nodes")" != "$MN_NODES" ] && pid_alive slurmctld \
    && die "a cluster of $(cat "$SLURM_DIR/nodes") nodes is up in $SLURM_DIR: run down first"
  if [ -s "$SLURM_CONF" ] && mn_is_up; then
    log "already up: $MN_NODES nodes (SLURM_CONF=$SLURM_CONF)"
    return 0
  fi
  local t0 k
  t0=$(date +%s%N)
  install_packages
  mn_network
  mn_write_configs
  mn_start_munge
  mn_start_mariadb
  start_controller varscalingnodes
  for k in $(seq "$MN_NODES"); do mn_start_slurmd "$k"; done
  nodes_ready 40 mn_nodes_idle "nodes not ready (see $SLURM_DIR/log/slurmd-*.log)"
  local tenths=$(( ($(date +%s%N) - t0) / 100000000 ))
  log "up: $MN_NODES nodes in $(( tenths / 10 )).$(( tenths % 10 )) s; source $SLURM_DIR/env.sh"
  sinfo -N
}

mn_kill_node() {   # mn_kill_node NAME: the node is lost, as when it loses power
  local name=$1 k ns pids
  k=${name#vsnode}
  ns=$(mn_ns "$k")
  [ -e "/run/netns/$ns" ] || die "no node $name here"
  # off the network first: its peers get no reset from the dying processes' sockets (a dead
  # machine sends none), so they hang in collectives until slurmctld notices the node
  ip link set "vsmn-h$k" down
  pids=$(ip netns pids "$ns" | tr '\n' ' ')
  [ -n "$pids" ] && kill -9 $pids 2>/dev/null
  log "killed node $name: link down, SIGKILL to pids $pids; \`up --nodes $MN_NODES\` brings it back"
}

mn_stop_pid() {   # mn_stop_pid LABEL PID: SIGTERM, SIGKILL after 15 s
  local label=$1 pid=$2 i
  kill "$pid" 2>/dev/null || return 0
  log "stopped $label ($pid)"
  for i in $(seq 100); do
    [ -e "/proc/$pid" ] && ! grep -q '^State:[[:space:]]*Z' "/proc/$pid/status" 2>/dev/null || return 0
    [ "$i" = 75 ] && kill -9 "$pid" 2>/dev/null
    sleep 0.2
  done
}

mn_down() {
  local k d pid ns nodes=$MN_NODES pids=()
  [ -s "$SLURM_DIR/nodes" ] && nodes=$(cat "$SLURM_DIR/nodes")
  if pid_alive slurmctld; then
    scancel --full --user="$(id -un)" 2>/dev/null || true
    for _ in $(seq 60); do
      [ -z "$(squeue -h 2>/dev/null)" ] && break
      sleep 0.5
    done
  fi
  # pid files vanish when a daemon exits: read them all first
  for k in $(seq "$nodes"); do
    pid_alive "slurmd-$(mn_node "$k")" && pids+=("slurmd-$(mn_node "$k"):$(cat "$SLURM_DIR/slurmd-$(mn_node "$k").pid")")
  done
  for d in slurmctld slurmdbd mariadbd munged; do
    pid_alive "$d" && pids+=("$d:$(cat "$SLURM_DIR/$d.pid")")
  done
  for d in "${pids[@]}"; do mn_stop_pid "${d%%:*}" "${d##*:}"; done
  for k in $(seq "$nodes"); do
    ns=$(mn_ns "$k")
    if [ -e "/run/netns/$ns" ]; then
      # anything our slurmd left in the node (job steps): by pid, in our namespace only
      for pid in $(ip netns pids "$ns"); do kill -9 "$pid" 2>/dev/null || true; done
      ip netns del "$ns"
    fi
    ip link del "vsmn-h$k" 2>/dev/null || true
  done
  ip link del "$MN_BRIDGE" 2>/dev/null || true
  if grep -q "# $MN_TAG\$" /etc/hosts; then
    local tmp
    tmp=$(grep -v "# $MN_TAG\$" /etc/hosts || true)
    printf '%s\n' "$tmp" > /etc/hosts
  fi
  rm -f "$SLURM_DIR"/*.pid
  log "down: namespaces, links, bridge, daemons and /etc/hosts lines removed"
}

mn_status() {
  local k rc=0 state d
  for d in munged mariadbd slurmdbd slurmctld; do
    if pid_alive "$d"; then state="running (pid $(cat "$SLURM_DIR/$d.pid"))"; else state="stopped"; rc=1; fi
    printf '%-16s %s\n' "$d" "$state"
  done
  for k in $(seq "$MN_NODES"); do
    d="slurmd-$(mn_node "$k")"
    if pid_alive "$d"; then state="running (pid $(cat "$SLURM_DIR/$d.pid"), $(mn_addr "$k"))"; else state="stopped"; rc=1; fi
    printf '%-16s %s\n' "$d" "$state"
  done
  if pid_alive slurmctld; then
    echo "SLURM_CONF=$SLURM_CONF"
    sinfo -N
    squeue
  fi
  return $rc
}

cmd="${1:-}"
shift || true
nodes=1
while [ $# -gt 0 ]; do
  case "$1" in
    --nodes) nodes=${2:?--nodes needs a number}; shift 2 ;;
    --nodes=*) nodes=${1#--nodes=}; shift ;;
    *) [ "$cmd" = kill-node ] && [ -z "${target:-}" ] && { target=$1; shift; continue; }
       echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done
[[ "$nodes" =~ ^[0-9]+$ ]] && [ "$nodes" -ge 1 ] || { echo "--nodes must be a positive number" >&2; exit 2; }
if [ "$cmd" = kill-node ]; then
  mn_setup "$(cat "${SLURM_NODES_DIR:-/tmp/var-scaling-slurm-nodes}/nodes" 2>/dev/null || echo 2)"
  mn_kill_node "${target:?kill-node needs a node name}"
  exit 0
fi
if [ "$nodes" -gt 1 ]; then
  if [ "$cmd" != up ] && [ -s "${SLURM_NODES_DIR:-/tmp/var-scaling-slurm-nodes}/nodes" ]; then
    nodes=$(cat "${SLURM_NODES_DIR:-/tmp/var-scaling-slurm-nodes}/nodes")
  fi
  mn_setup "$nodes"
  case "$cmd" in
    up) mn_up ;;
    down) mn_down ;;
    status) mn_status ;;
    *) echo "usage: $0 up|down|status [--nodes N] | kill-node NAME" >&2; exit 2 ;;
  esac
  exit $?
fi
case "$cmd" in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  *) echo "usage: $0 up|down|status [--nodes N] | kill-node NAME   (SLURM_DIR=${SLURM_DIR})" >&2; exit 2 ;;
esac
