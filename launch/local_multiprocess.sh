#!/usr/bin/env bash
# Runs jaxal as N cooperating CPU processes on this machine (JAX's multi-controller runtime),
# for testing multi-host code paths without a cluster.
#
#   launch/local_multiprocess.sh 2 --config=configs/digits_demo.py --workdir=/tmp/mp
#
# Every process runs the same program on the same data; only process 0 writes rounds.jsonl
# and plots. Set DEVICES_PER_PROCESS to give each process several fake CPU devices.
set -euo pipefail
if [ $# -lt 1 ] || ! [[ "$1" =~ ^[0-9]+$ ]]; then
  echo "usage: $0 NUM_PROCESSES [jaxal.main flags...]" >&2
  exit 2
fi
n="$1"; shift
port="${PORT:-$((20000 + RANDOM % 20000))}"
per="${DEVICES_PER_PROCESS:-1}"
pids=()
for ((i = 0; i < n; i++)); do
  JAX_PLATFORMS=cpu JAXAL_DISTRIBUTED=1 JAX_COORDINATOR_ADDRESS="localhost:${port}" \
  JAX_NUM_PROCESSES="$n" JAX_PROCESS_ID="$i" \
  XLA_FLAGS="--xla_force_host_platform_device_count=${per} ${XLA_FLAGS:-}" \
    python -m jaxal.main "$@" > >(sed "s/^/[process $i] /") 2>&1 &
  pids+=($!)
done
status=0
for pid in "${pids[@]}"; do
  wait "$pid" || status=$?
done
exit "$status"
