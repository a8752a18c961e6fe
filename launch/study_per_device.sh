#!/usr/bin/env bash
# Spreads a study over this machine's accelerators: one independent study process per device,
# each running every N-th run of the grid (`jaxal.study --process_index --num_processes`).
#
#   launch/study_per_device.sh NUM_DEVICES --config=configs/study_mnist_cpu.py --root=runs/study
#
# Process i sees only GPU i (CUDA_VISIBLE_DEVICES). On several hosts, run it on every host with
# HOST_INDEX and NUM_HOSTS set: process i of host h takes share h*NUM_DEVICES+i of
# NUM_HOSTS*NUM_DEVICES, so the hosts split the grid without talking to each other. With
# JAX_PLATFORMS=cpu the processes share the CPU (for testing). Finished runs are skipped, so
# rerunning the same command resumes. When every process is done (on one host), the script
# writes the report once with --report_only; on several hosts run that yourself at the end.
set -euo pipefail
if [ $# -lt 1 ] || ! [[ "$1" =~ ^[0-9]+$ ]] || [ "$1" -lt 1 ]; then
  echo "usage: $0 NUM_DEVICES [jaxal.study flags: --config=... --root=...]" >&2
  exit 2
fi
n="$1"; shift
host="${HOST_INDEX:-0}"
hosts="${NUM_HOSTS:-1}"
total=$((n * hosts))
pids=()
for ((i = 0; i < n; i++)); do
  index=$((host * n + i))
  CUDA_VISIBLE_DEVICES="${CUDA_VISIBLE_DEVICES_OVERRIDE:-$i}" \
    python -m jaxal.study "$@" --process_index="$index" --num_processes="$total" \
    > >(sed "s/^/[device $i] /") 2>&1 &
  pids+=($!)
done
status=0
for pid in "${pids[@]}"; do
  wait "$pid" || status=$?
done
if [ "$status" -eq 0 ] && [ "$hosts" -eq 1 ]; then
  python -m jaxal.study "$@" --report_only
fi
exit "$status"
