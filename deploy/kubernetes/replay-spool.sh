#!/usr/bin/env bash
# Replays the outage spool a scaled-away replica left on its claim (spool-mnist-app-<ordinal>), once PostgreSQL is
# back: a one-off pod of the app's image mounts the claim and runs `python db.py`, which claims that spool and
# replays it (each write exactly once: request ids and label times make a replay idempotent), then ends.
#   deploy/kubernetes/replay-spool.sh <ordinal> [namespace]     # e.g. 3, after the HPA scaled 4 replicas to 3
# A replica that comes back with the same ordinal replays its claim by itself; this is for one that will not.
set -euo pipefail
ordinal=${1:?usage: replay-spool.sh <ordinal> [namespace]}
namespace=${2:-mnist}
[[ "$ordinal" =~ ^[0-9]+$ ]] || { echo "the ordinal is a number (mnist-app-<ordinal>)" >&2; exit 64; }
image=$(kubectl -n "$namespace" get statefulset mnist-app -o jsonpath='{.spec.template.spec.containers[0].image}')
secret=$(kubectl -n "$namespace" get statefulset mnist-app \
  -o jsonpath='{.spec.template.spec.containers[0].env[?(@.name=="DATABASE_URL")].valueFrom.secretKeyRef.name}')
kubectl -n "$namespace" run "mnist-replay-$ordinal" --rm -i --restart=Never --image="$image" \
  --labels=app.kubernetes.io/name=mnist-migrate --overrides="$(cat <<JSON
{"spec": {"automountServiceAccountToken": false,
  "securityContext": {"runAsNonRoot": true, "runAsUser": 10001, "runAsGroup": 10001, "fsGroup": 10001,
                      "seccompProfile": {"type": "RuntimeDefault"}},
  "containers": [{"name": "replay", "image": "$image", "command": ["python", "db.py"],
    "env": [{"name": "SPOOL_DIR", "value": "/app/data"},
            {"name": "DATABASE_URL", "valueFrom": {"secretKeyRef": {"name": "$secret", "key": "uri"}}}],
    "securityContext": {"allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true,
                        "capabilities": {"drop": ["ALL"]}},
    "volumeMounts": [{"name": "spool", "mountPath": "/app/data"}, {"name": "tmp", "mountPath": "/tmp"}]}],
  "volumes": [{"name": "spool", "persistentVolumeClaim": {"claimName": "spool-mnist-app-$ordinal"}},
              {"name": "tmp", "emptyDir": {}}]}}
JSON
)"
