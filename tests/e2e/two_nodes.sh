#!/usr/bin/env bash
# A real two-node launch on one machine: two network namespaces ("nodes") with their own
# hostnames (UTS namespaces) and addresses on a veth pair, an sshd in each, and Open MPI's ssh
# launcher starting one rank per node from a hostfile. It checks that
#   - dp=2 trains with one rank on each node (threads per rank = cores / ranks on the node: the
#     two-node run gets all cores, the same hostfile with both ranks on one node half of them);
#   - every rank writes its shard into the shared checkpoint, and the job resumes from it;
#   - killing one node's rank ends the job with a message naming it and its node (the lost-rank
#     handling of README "When a rank is lost", across nodes), in bounded time.
# Everything it starts it stops (sshd, namespaces). Skipped (77) with the reason where it cannot
# make namespaces (not root, no CAP_SYS_ADMIN) or lacks sshd, ssh or mpirun.
set -euo pipefail
source "$(dirname "$0")/lib.bash"
e2e_init "$@"

skip() { echo "skipped: $*"; exit 77; }
[[ $(id -u) -eq 0 ]] || skip "needs root for network namespaces"
for tool in ip unshare ssh ssh-keygen mpirun; do
  command -v $tool >/dev/null || skip "$tool not found"
done
SSHD=$(command -v sshd || echo /usr/sbin/sshd)
[[ -x $SSHD ]] || skip "sshd not found (Debian package openssh-server)"

NS=(strata_n1_$$ strata_n2_$$)
ADDR=(10.77.0.1 10.77.0.2)
two_nodes_cleanup() {
  local i pid
  for i in 0 1; do
    [[ -f $E2E_WORK/sshd$i.pid ]] && kill "$(cat "$E2E_WORK/sshd$i.pid")" 2>/dev/null || true
    for pid in $(ip netns pids "${NS[$i]}" 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
    ip netns del "${NS[$i]}" 2>/dev/null || true
  done
}
trap 'rc=$?; two_nodes_cleanup; (exit $rc); e2e_cleanup' EXIT

ip netns add "${NS[0]}" 2>/dev/null || skip "cannot create network namespaces here"
ip netns add "${NS[1]}"
ip link add sv1_$$ type veth peer name sv2_$$
for i in 0 1; do
  ip link set sv$((i + 1))_$$ netns "${NS[$i]}"
  ip -n "${NS[$i]}" addr add "${ADDR[$i]}/24" dev sv$((i + 1))_$$
  ip -n "${NS[$i]}" link set lo up
  ip -n "${NS[$i]}" link set sv$((i + 1))_$$ up
done

# One key for the client and the host, both private to this test.
ssh-keygen -q -t ed25519 -N '' -f id
ssh-keygen -q -t ed25519 -N '' -f hostkey
cp id.pub authorized_keys
chmod 600 authorized_keys
mkdir -p /run/sshd  # sshd's privilege-separation directory
for i in 0 1; do
  cat > sshd$i.conf <<EOF2
ListenAddress ${ADDR[$i]}
HostKey $PWD/hostkey
AuthorizedKeysFile $PWD/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PidFile $PWD/sshd$i.pid
EOF2
  ip netns exec "${NS[$i]}" unshare --uts sh -c "hostname node$((i + 1)) && exec $SSHD -f $PWD/sshd$i.conf -E $PWD/sshd$i.log"
done
SSH_ARGS="-i $PWD/id -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o BatchMode=yes -o LogLevel=ERROR"
for _ in $(seq 50); do
  ip netns exec "${NS[0]}" ssh $SSH_ARGS "${ADDR[1]}" true 2>/dev/null && break
  sleep 0.1
done
[[ $(ip netns exec "${NS[0]}" ssh $SSH_ARGS "${ADDR[1]}" hostname) == node2 ]] ||
  fail "node2's sshd does not answer as node2: $(cat sshd1.log)"

printf '%s slots=1\n%s slots=1\n' "${ADDR[0]}" "${ADDR[1]}" > hosts
printf '%s slots=2\n' "${ADDR[0]}" > one_host
prepare_corpus .
SETS=("${TINY_SETS[@]}" --set data.train="$PWD/data/train" --set data.val="$PWD/data/val"
      --set train.micro_batch=1 --set parallel.dp=2 --set train.eval_every=0 --set train.threads=0)

# on_node1 HOSTFILE ARGS...: mpirun on node1 (its own hostname too) with the ssh launcher. The
# threads per rank are the CLI's own choice: no OMP_NUM_THREADS anywhere.
on_node1() {
  local hostfile=$1
  shift
  run env -u OMP_NUM_THREADS ip netns exec "${NS[0]}" unshare --uts sh -c \
    'hostname node1 && cd "$0" && exec "$@"' "$PWD" mpirun --allow-run-as-root --oversubscribe \
    --hostfile "$hostfile" -np 2 --bind-to none --mca plm_rsh_agent ssh \
    --mca plm_rsh_args "$SSH_ARGS" -x OMP_WAIT_POLICY=passive "$STRATA" train "${SETS[@]}" "$@"
}
threads_of() { grep -oE '[0-9]+ threads' "$E2E_OUT/stderr" | head -n 1 | cut -d' ' -f1; }

cores=$(nproc)
on_node1 one_host --set train.steps=2 --set train.run_dir=one_node
expect_exit 0 "both ranks on node1"
one_node_threads=$(threads_of)

on_node1 hosts --set train.steps=4 --set checkpoint.every=2 --set train.run_dir=run
expect_exit 0 "dp=2 over two nodes"
two_node_threads=$(threads_of)
[[ $two_node_threads -eq $cores ]] ||
  fail "a rank alone on its node should get all $cores cores, got $two_node_threads threads"
if [[ $cores -ge 2 ]]; then
  [[ $one_node_threads -eq $((cores / 2)) ]] ||
    fail "two ranks on one node should get $((cores / 2)) threads each, got $one_node_threads"
fi
expect_file run/checkpoints/step_00000004/shard_r00000.bin
expect_file run/checkpoints/step_00000004/shard_r00001.bin
expect_stderr_contains "step 4/4"

# Resume from the shared checkpoint: steps 5 and 6 only.
on_node1 hosts --set train.steps=6 --set train.run_dir=run
expect_exit 0 "resume over two nodes"
expect_stderr_contains "at step 4 (written by 2 ranks)" "resumed from the shared checkpoint"
python3 - run/metrics.jsonl <<'PY' || fail "the resumed steps"
import json, sys
steps = [json.loads(l)["step"] for l in open(sys.argv[1])]
assert steps == [1, 2, 3, 4, 5, 6], steps
PY

# Kill node2's rank mid-run: the job ends, naming it, well within its deadlines.
(on_node1 hosts --set train.steps=100000 --set train.run_dir=lost --set train.collective_timeout_s=5
 echo "$E2E_RC" > lost.rc; cp "$E2E_OUT/stderr" lost.err) &
runner=$!
for _ in $(seq 600); do
  [[ -f lost/metrics.jsonl && $(wc -l < lost/metrics.jsonl) -ge 3 ]] && break
  sleep 0.1
done
victim=""
for pid in $(ip netns pids "${NS[1]}"); do
  [[ $(cat /proc/$pid/comm 2>/dev/null) == strata ]] && victim=$pid
done
[[ -n $victim ]] || fail "no strata rank runs on node2"
t_kill=$SECONDS
kill -9 "$victim"
wait "$runner"
took=$((SECONDS - t_kill))
cp lost.err "$E2E_OUT/stderr"
E2E_RC=$(cat lost.rc)
[[ $E2E_RC -ne 0 ]] || fail "the job survived the loss of node2's rank"
[[ $took -le 60 ]] || fail "the job took $took s to end after node2's rank was killed"
expect_stderr_matches "rank 1 with PID [0-9]+ on node 10\.77\.0\.2 (exited on signal 9|Killed)" \
  "mpirun names the killed rank and its node"
