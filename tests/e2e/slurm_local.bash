# A private single-node Slurm cluster on localhost for the e2e tests (sourced, not a test itself).
#
#     source "$(dirname "${BASH_SOURCE[0]}")/slurm_local.bash"
#     slurm_local_missing && { echo "skipped: $SLURM_LOCAL_REASON"; exit 77; }
#     slurm_local_start DIR || { echo "skipped: $SLURM_LOCAL_REASON"; exit 77; }
#     ... sbatch / srun / sinfo (SLURM_CONF is exported) ...
#     slurm_local_stop      # also safe to call from a trap, more than once
#
# Everything lives under DIR: a munge key and socket (munged on a private socket, so a system
# munged is neither needed nor touched), slurm.conf, state, spool, pid and log files. Ports are
# picked free on 127.0.0.1. slurm_local_stop cancels the jobs, stops the daemons it started (by
# their pids) and then any process left with this cluster's SLURM_CONF in its environment
# (slurmstepd, job tasks), so nothing outlives the test.

SLURM_LOCAL_DIR=""
SLURM_LOCAL_PIDS=()
SLURM_LOCAL_REASON=""

# slurm_local_missing: true (0) when a needed program is missing, the reason in SLURM_LOCAL_REASON.
slurm_local_missing() {
  local p
  for p in munged slurmctld slurmd sbatch sinfo squeue scancel srun; do
    if ! command -v "$p" >/dev/null 2>&1 && [[ ! -x /usr/sbin/$p ]]; then
      SLURM_LOCAL_REASON="'$p' not found (install slurm-wlm and munge: bash launch/setup.sh --tests)"
      return 0
    fi
  done
  if [[ $(id -u) -ne 0 ]]; then
    SLURM_LOCAL_REASON="a private slurmd must run as root (it starts jobs as their user); uid is $(id -u)"
    return 0
  fi
  return 1
}

_slurm_local_free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

_slurm_local_log_tail() {
  local f
  for f in "$SLURM_LOCAL_DIR"/log/*.log; do
    [[ -f $f ]] || continue
    echo "--- $f (last 10 lines) ---"
    tail -n 10 "$f"
  done
}

# slurm_local_start DIR: starts munged, slurmctld and slurmd; returns once the node is idle.
# Returns 1 with SLURM_LOCAL_REASON (and the daemons' log tails on stderr) when they cannot start.
slurm_local_start() {
  local dir=$1 host cpus mem ctld_port slurmd_port
  export PATH="$PATH:/usr/sbin"
  mkdir -p "$dir"/{munge,state,spool,log,run,tmp}
  chmod 700 "$dir" "$dir/munge"
  SLURM_LOCAL_DIR=$(realpath "$dir")
  dir=$SLURM_LOCAL_DIR
  host=$(hostname -s)
  cpus=$(nproc --all)
  mem=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 / 2 ))

  dd if=/dev/urandom of="$dir/munge/munge.key" bs=1024 count=1 status=none
  chmod 400 "$dir/munge/munge.key"
  munged --foreground --force --socket="$dir/munge/munge.sock" --key-file="$dir/munge/munge.key" \
    --pid-file="$dir/munge/munged.pid" --log-file="$dir/log/munged.log" \
    --seed-file="$dir/munge/munged.seed" >>"$dir/log/munged.log" 2>&1 &
  SLURM_LOCAL_PIDS+=($!)

  ctld_port=$(_slurm_local_free_port)
  slurmd_port=$(_slurm_local_free_port)
  [[ $slurmd_port != "$ctld_port" ]] || slurmd_port=$(_slurm_local_free_port)
  cat >"$dir/slurm.conf" <<EOF
ClusterName=strata-e2e-$$
# Job ids differ between clusters that run at the same time on this host: Open MPI names its
# shared-memory segments after the PMIx job id, which srun derives from the Slurm job id.
FirstJobId=$(( ($$ % 6000) * 10000 + 10000 ))  # below MaxJobId (67043328)
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$dir/munge/munge.sock
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool/%n
SlurmctldPidFile=$dir/run/slurmctld.pid
SlurmdPidFile=$dir/run/slurmd-%n.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
TmpFS=$dir/tmp
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
ReturnToService=2
KillWait=5
InactiveLimit=0
MinJobAge=30
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
  export SLURM_CONF="$dir/slurm.conf"

  # munged answers on its socket.
  local i
  for i in $(seq 1 50); do
    [[ -S "$dir/munge/munge.sock" ]] && break
    sleep 0.1
  done
  if ! munge --socket="$dir/munge/munge.sock" -n </dev/null | unmunge --socket="$dir/munge/munge.sock" >/dev/null 2>&1; then
    SLURM_LOCAL_REASON="munged did not start on a private socket"
    _slurm_local_log_tail >&2
    return 1
  fi

  slurmctld -D -c -f "$SLURM_CONF" >>"$dir/log/slurmctld.out" 2>&1 &
  SLURM_LOCAL_PIDS+=($!)
  slurmd -D -f "$SLURM_CONF" >>"$dir/log/slurmd.out" 2>&1 &
  SLURM_LOCAL_PIDS+=($!)

  local state=""
  for i in $(seq 1 60); do  # 30 s
    state=$(sinfo -h -N -o '%T' 2>/dev/null | head -n 1 || true)
    [[ $state == idle ]] && return 0
    local pid
    for pid in "${SLURM_LOCAL_PIDS[@]}"; do
      if ! kill -0 "$pid" 2>/dev/null; then
        SLURM_LOCAL_REASON="a Slurm daemon exited at start (pid $pid); see the logs above"
        { _slurm_local_log_tail; cat "$dir"/log/*.out 2>/dev/null | tail -n 10; } >&2
        return 1
      fi
    done
    sleep 0.5
  done
  SLURM_LOCAL_REASON="node '$host' not idle after 30 s (state '${state:-none}')"
  _slurm_local_log_tail >&2
  return 1
}

# _slurm_local_own_pids: processes whose environment holds this cluster's SLURM_CONF.
_slurm_local_own_pids() {
  local needle="SLURM_CONF=$SLURM_LOCAL_DIR/slurm.conf" p env_text
  for p in /proc/[0-9]*; do
    [[ ${p#/proc/} == "$$" || ${p#/proc/} == "$BASHPID" ]] && continue
    # Read whole: piped into grep -q, tr's SIGPIPE would be the status under pipefail.
    env_text=$(tr '\0' '\n' <"$p/environ" 2>/dev/null) || continue
    grep -qxF -- "$needle" <<<"$env_text" && echo "${p#/proc/}"
  done
  return 0
}

slurm_local_stop() {
  [[ -n $SLURM_LOCAL_DIR ]] || return 0
  local i pid
  if [[ -n ${SLURM_CONF:-} ]] && ((${#SLURM_LOCAL_PIDS[@]} > 0)); then
    timeout 5 scancel --full -p debug >/dev/null 2>&1 || true
    for i in $(seq 1 20); do
      [[ -z $(timeout 3 squeue -h -t running,completing,pending 2>/dev/null) ]] && break
      sleep 0.25
    done
  fi
  # Reverse order: slurmd, slurmctld, munged.
  for ((i = ${#SLURM_LOCAL_PIDS[@]} - 1; i >= 0; i--)); do
    kill -TERM "${SLURM_LOCAL_PIDS[i]}" 2>/dev/null || true
  done
  for i in $(seq 1 40); do
    local alive=0
    for pid in "${SLURM_LOCAL_PIDS[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    ((alive)) || break
    sleep 0.1
  done
  for pid in "${SLURM_LOCAL_PIDS[@]}" $(_slurm_local_own_pids); do
    kill -KILL "$pid" 2>/dev/null || true
  done
  for pid in "${SLURM_LOCAL_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  SLURM_LOCAL_PIDS=()
  SLURM_LOCAL_DIR=""
}

# slurm_e2e_begin ARGS...: the start of an e2e test on the private cluster. Exits 77 (skipped)
# when Slurm is missing or its daemons cannot start; otherwise lib.bash is set up (e2e_init) and
# the daemons are stopped first on any exit.
slurm_e2e_begin() {
  if slurm_local_missing; then echo "skipped: $SLURM_LOCAL_REASON"; exit 77; fi
  source "$(dirname "${BASH_SOURCE[0]}")/lib.bash"
  e2e_init "$@"
  trap 'rc=$?; set +e; slurm_local_stop; (exit $rc); e2e_cleanup' EXIT
  trap 'exit 143' TERM
  trap 'exit 130' INT
  if ! slurm_local_start "$E2E_ROOT/cluster"; then
    echo "skipped: private Slurm cluster did not start: $SLURM_LOCAL_REASON"
    exit 77
  fi
}
