#!/usr/bin/env bash
# Deploy one commit on the server, replacing the app replicas only once their successors are ready, and roll back
# to the last good release on any failure (then check that the rollback itself is up).
#
#   deploy/deploy.sh <commit> [image]    # what CI runs over SSH: the deploy key's forced command (DEPLOYMENT.md, 7),
#                                        # which gets "<commit> [image]" in SSH_ORIGINAL_COMMAND and nothing else
#
# <commit>: the 40-hex commit to ship. [image]: the image CI built and tested for it (registry@sha256:...), pulled
# and tagged mnist-digit-classifier:<commit>; without it the image is built here from that commit.
# Ready means every app container's healthcheck (GET /readyz: the model loaded, the database with its schema) says
# healthy. The last good commit is kept in .deploy/last-good; images are tagged by commit, never :latest, and
# APP_TAG in .env names the one running, so a manual `docker compose up -d` keeps it.
# tests/deploy/test_deploy_script.py drives this script with a fake docker and git on PATH that record calls and fail on
# cue (this machine has no Docker engine); the control flow is what it checks.
set -uo pipefail # no -e: every failure must reach the rollback, not end the script halfway

APP_DIR=${APP_DIR:-$(cd "$(dirname "$0")/.." && pwd)}
export APP_DIR
# git checkout below rewrites this very file, and bash reads a script as it runs: run from a copy.
if [ -z "${DEPLOY_RUNNING_COPY:-}" ]; then
  copy=$(mktemp) && cp "$0" "$copy" && DEPLOY_RUNNING_COPY=$copy exec bash "$copy" "$@"
fi
trap 'rm -f "$DEPLOY_RUNNING_COPY"' EXIT
READY_SECONDS=${READY_SECONDS:-300}
POLL_SECONDS=${POLL_SECONDS:-5}
IMAGE=mnist-digit-classifier
STATE="$APP_DIR/.deploy"

log() { printf '%s deploy: %s\n' "$(date -u +%FT%TZ)" "$*" >&2; }
replicas() { local n; n=$(sed -n 's/^APP_REPLICAS=//p' "$APP_DIR/.env" 2>/dev/null | tail -1); echo "${n:-1}"; }
app_ids() { docker compose ps -q app 2>/dev/null | sort; }

set_tag() { # APP_TAG=<tag> in .env: what Compose runs from now on
  if grep -q '^APP_TAG=' "$APP_DIR/.env"; then sed -i "s/^APP_TAG=.*/APP_TAG=$1/" "$APP_DIR/.env"
  else echo "APP_TAG=$1" >> "$APP_DIR/.env"; fi
}

healthy() { # every container named is healthy
  local id status
  [ $# -gt 0 ] || return 1
  for id in "$@"; do
    status=$(docker inspect --format '{{.State.Health.Status}}' "$id" 2>/dev/null) || return 1
    [ "$status" = healthy ] || return 1
  done
}

wait_healthy() { # wait_healthy <ids...>: all healthy within READY_SECONDS
  local waited=0
  while [ "$waited" -lt "$READY_SECONDS" ]; do
    healthy "$@" && return 0
    sleep "$POLL_SECONDS"; waited=$((waited + POLL_SECONDS))
  done
  return 1
}

get_image() { # get_image <commit> [image]: mnist-digit-classifier:<commit>, pulled (CI's tested image) or built
  if [ -n "${2:-}" ]; then
    docker pull "$2" && docker tag "$2" "$IMAGE:$1"
  else
    docker build --pull -t "$IMAGE:$1" "$APP_DIR"
  fi
}

rollback() { # rollback <reason> [ids of new containers]: back to the last good release, and check it is up
  local reason=$1 running; shift
  log "FAILED: $reason; rolling back to ${last_good:-nothing (first deploy)}"
  [ $# -gt 0 ] && docker rm -f "$@" >/dev/null
  if [ -z "$last_good" ]; then
    log "no earlier release to roll back to: nothing is served until a deploy succeeds"; exit 1
  fi
  git -C "$APP_DIR" checkout --quiet --force --detach "$last_good"
  set_tag "$last_good"
  running=$(app_ids)
  if [ -z "$running" ]; then # nothing left running (it had died, or was replaced): start the last good release
    APP_TAG=$last_good docker compose up -d --no-build --scale app="$(replicas)"
    running=$(app_ids)
  fi
  # shellcheck disable=SC2086 # one argument per container id
  if wait_healthy $running; then log "rolled back to $last_good, and it is healthy"; exit 1; fi
  log "ROLLBACK UNHEALTHY too: $last_good is not ready either; see docker compose logs app"; exit 2
}

main() {
  if [ $# -eq 0 ] && [ -n "${SSH_ORIGINAL_COMMAND:-}" ]; then # the deploy key's forced command: "<commit> [image]"
    read -r -a words <<< "$SSH_ORIGINAL_COMMAND"; set -- "${words[@]}"
  fi
  local commit=${1:-} image=${2:-} new n
  [[ $# -le 2 && "$commit" =~ ^[0-9a-f]{40}$ ]] || { log "usage: deploy.sh <40-hex commit> [image]"; exit 64; }
  [[ -z "$image" || "$image" =~ ^[a-z0-9.-]+(/[a-z0-9._-]+)+@sha256:[0-9a-f]{64}$ ]] \
    || { log "the image must be named by digest (registry/name@sha256:...)"; exit 64; }
  cd "$APP_DIR" || exit 1
  mkdir -p "$STATE"
  last_good=$(cat "$STATE/last-good" 2>/dev/null || true)
  old=$(app_ids)
  n=$(replicas)
  git fetch --quiet origin || rollback "git fetch failed"
  git checkout --quiet --force --detach "$commit" || rollback "commit $commit not found"
  get_image "$commit" "$image" || rollback "could not get the image for $commit"
  docker compose up -d --no-build --no-deps db || rollback "the database did not start"
  # The successors start beside the running replicas (twice the count for a moment), so users always have one.
  APP_TAG=$commit docker compose up -d --no-build --no-deps --no-recreate --scale app="$((n + $(wc -w <<< "$old")))" app \
    || rollback "docker compose up failed" $(comm -13 <(echo "$old") <(app_ids))
  new=$(comm -13 <(echo "$old") <(app_ids))
  [ -n "$new" ] || rollback "no new app container started"
  # shellcheck disable=SC2086
  wait_healthy $new || rollback "the new replicas were not ready within ${READY_SECONDS}s" $new
  # shellcheck disable=SC2086
  [ -n "$old" ] && docker rm -f $old >/dev/null # the predecessors go only now that their successors serve
  set_tag "$commit"
  APP_TAG=$commit docker compose up -d --no-build --no-deps caddy || rollback "the proxy did not start" $new
  echo "$commit" > "$STATE/last-good"
  log "deployed $commit: $(wc -w <<< "$new") replica(s) ready"
}

main "$@"
