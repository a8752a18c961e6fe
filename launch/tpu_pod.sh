#!/usr/bin/env bash
# Runs jaxal on every worker of a Cloud TPU VM pod slice.
#
#   launch/tpu_pod.sh TPU_NAME ZONE --config=configs/inas_cifar10.py --workdir=gs://bucket/runs/inas
#
# Every worker runs the same command; jax.distributed.initialize() auto-detects the TPU
# topology. Install jaxal on the workers first (REPO_URL below), and keep the workdir on
# storage all workers share (a GCS bucket or NFS).
set -euo pipefail
if [ $# -lt 2 ]; then
  echo "usage: $0 TPU_NAME ZONE [jaxal.main flags...]" >&2
  exit 2
fi
tpu="$1"; zone="$2"; shift 2
args=$(printf ' %q' "$@")
gcloud compute tpus tpu-vm ssh "$tpu" --zone="$zone" --worker=all \
  --command="cd \${JAXAL_DIR:-jaxal} && JAXAL_DISTRIBUTED=1 python -m jaxal.main${args}"
