#!/usr/bin/env bash
# A real single-node SLURM cluster on this machine (Debian's slurm-wlm and munge), for the tests of
# `benchmark/sweep.py --executor slurm` and for trying the cluster path on one machine. Needs root.
#   bash benchmark/slurm/cluster.sh up      # install the packages if missing, write slurm.conf, start the daemons
#   bash benchmark/slurm/cluster.sh down    # stop the daemons, remove the state and the slurm.conf written here
# The node offers this machine's cores and memory in one partition, "local".
set -euo pipefail
STATE=/tmp/slurm-local
CONF=/etc/slurm/slurm.conf
MARK="# written by benchmark/slurm/cluster.sh"

up() {
  if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q slurm-wlm munge >/dev/null \
      || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q slurm-wlm munge >/dev/null; }
  fi
  if [ -f "$CONF" ] && ! grep -qF "$MARK" "$CONF"; then
    echo "error: $CONF exists and was not written by this script; not touching it" >&2
    exit 1
  fi
  mkdir -p "$STATE/ctld" "$STATE/d" /run/munge
  chown munge:munge /run/munge
  [ -f /etc/munge/munge.key ] || runuser -u munge -- mungekey --create
  pgrep -x munged >/dev/null || runuser -u munge -- munged
  local node
  node=$(slurmd -C | head -1)  # NodeName=<host> CPUs=... RealMemory=... as slurmd sees this machine
  cat > "$CONF" <<CONF
$MARK
ClusterName=local
SlurmctldHost=$(hostname -s)
SlurmUser=root
AuthType=auth/munge
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/d
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/slurmctld.log
SlurmdLogFile=$STATE/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
JobRequeue=1
MinJobAge=3600
KillWait=60
$node State=UNKNOWN
PartitionName=local Nodes=$(hostname -s) Default=YES MaxTime=INFINITE State=UP
CONF
  pgrep -x slurmctld >/dev/null || slurmctld
  pgrep -x slurmd >/dev/null || slurmd
  for _ in $(seq 60); do
    if sinfo -h -o %T 2>/dev/null | grep -qE "^(idle|mixed|allocated)"; then
      echo "SLURM is up: $(sinfo -h -o '%P %D node(s) %c CPUs %m MB %T')"
      return 0
    fi
    sleep 1
  done
  echo "error: the node did not come up; see $STATE/slurmctld.log and $STATE/slurmd.log" >&2
  exit 1
}

down() {
  if command -v scancel >/dev/null && [ -f "$CONF" ] && grep -qF "$MARK" "$CONF"; then
    scancel --user="$(id -un)" 2>/dev/null || true
    scontrol shutdown 2>/dev/null || true
  fi
  for _ in $(seq 20); do pgrep -x slurmctld >/dev/null || pgrep -x slurmd >/dev/null || break; sleep 0.5; done
  pkill -x slurmd 2>/dev/null || true
  pkill -x slurmctld 2>/dev/null || true
  pkill -x munged 2>/dev/null || true
  if [ -f "$CONF" ] && grep -qF "$MARK" "$CONF"; then rm -f "$CONF"; fi
  rm -rf "$STATE"
  echo "SLURM is down"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  *) echo "usage: $0 up|down" >&2; exit 2 ;;
esac
