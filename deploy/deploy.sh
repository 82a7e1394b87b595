#!/usr/bin/env bash
# Deploy one commit on the server without undoing the operator's edits or cutting users off: the new replicas start
# beside the old, are proven through Caddy, and only then are the old drained and removed. Any failure, or an
# interruption (INT, TERM, HUP: a dropped SSH session), rolls back to the last good release and checks the whole path.
#
#   deploy/deploy.sh <commit> [image]    # what CI runs over SSH: the deploy key's forced command (DEPLOYMENT.md, 7),
#                                        # which gets "<commit> [image]" in SSH_ORIGINAL_COMMAND and nothing else
#
# <commit>: the 40-hex commit to ship. [image]: the image CI built and tested for it (registry@sha256:...), pulled
# and tagged mnist-digit-classifier:<commit>; without it the image is built here from that commit.
#
# The steps, each a reason to roll back if it fails:
#   1. refuse a checkout with edited tracked files (named): the operator's settings live in .env, secrets/ and
#      docker-compose.override.yml, which a checkout never touches; take the lock (one deploy at a time);
#   2. check out the commit, get its image, start the database;
#   3. start the new replicas beside the old (twice the count for a moment) and wait for their healthchecks (/readyz);
#   4. bring Caddy up on the new commit's Caddyfile and prove the path: /readyz of every new replica from inside the
#      proxy's container (proxy -> app -> database), the page's health and one prediction (deploy/probe-seven.png
#      must read as 7) through Caddy itself;
#   5. drain the old replicas (SIGTERM, DRAIN_SECONDS for answers in flight to finish), remove them, prove again.
# Rollback starts the last good release if none of it is still running, brings Caddy back on its Caddyfile, proves
# the same path, and only then removes the new replicas; if the last good release cannot serve, the new replicas
# (when healthy) are kept, never leaving the site with none. Exit 0 deployed, 1 rolled back, 2 the rollback did not
# serve either, 64 bad arguments, 65 edited tracked files, 75 another deploy holds the lock.
# tests/deploy/test_deploy_script.py drives this script with fake docker, git and curl on PATH that record calls and
# fail on cue (this machine has no Docker engine); the control flow is what it checks.
set -uo pipefail # no -e: every failure must reach the rollback, not end the script halfway

APP_DIR=${APP_DIR:-$(cd "$(dirname "$0")/.." && pwd)}
export APP_DIR
# git checkout below rewrites this very file, and bash reads a script as it runs: run from a copy.
if [ -z "${DEPLOY_RUNNING_COPY:-}" ]; then
  copy=$(mktemp) && cp "$0" "$copy" && DEPLOY_RUNNING_COPY=$copy exec bash "$copy" "$@"
fi
READY_SECONDS=${READY_SECONDS:-300}
POLL_SECONDS=${POLL_SECONDS:-5}
DRAIN_SECONDS=${DRAIN_SECONDS:-30}
IMAGE=mnist-digit-classifier
STATE="$APP_DIR/.deploy"
PROBE="$APP_DIR/deploy/probe-seven.png"
new="" old="" last_good="" rolling_back=""

log() { # to the terminal while there is one, and always to .deploy/deploy.log (a dropped session loses nothing)
  local line
  line="$(date -u +%FT%TZ) deploy: $*"
  printf '%s\n' "$line" >> "$STATE/deploy.log" 2>/dev/null
  printf '%s\n' "$line" >&2 2>/dev/null || true
}
env_value() { sed -n "s/^$1=//p" "$APP_DIR/.env" 2>/dev/null | tail -1; }
replicas() { local n; n=$(env_value APP_REPLICAS); echo "${n:-1}"; }
app_ids() { docker compose ps -q app 2>/dev/null | sort; }
alive() { comm -12 <(echo "$1" | tr ' ' '\n' | sort) <(app_ids) | tr '\n' ' '; } # alive <ids>: those still there

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

proxy_curl() { # curl through Caddy on this host: https://$DOMAIN when it is set (resolved to loopback), else port 80
  local domain; domain=$(env_value DOMAIN)
  if [ -n "$domain" ]; then curl -fsS --max-time 20 --resolve "$domain:443:127.0.0.1" "${@:2}" "https://$domain$1"
  else curl -fsS --max-time 20 "${@:2}" "http://127.0.0.1$1"; fi
}

reachable() { # reachable <ids...>: each replica's /readyz from inside the proxy's container (proxy -> app -> database)
  local id ip
  [ $# -gt 0 ] || return 1
  for id in "$@"; do
    ip=$(docker inspect --format '{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}' "$id" 2>/dev/null \
      | awk '{print $1}') || return 1
    docker compose exec -T caddy wget -q -O /dev/null "http://$ip:8501/readyz" || { log "$id not ready via the proxy"; return 1; }
  done
}

serves() { # serves: the page's health and one prediction through Caddy itself (the probe must read as 7)
  local answer
  proxy_curl /_stcore/health -o /dev/null || { log "the page's health does not answer through Caddy"; return 1; }
  answer=$(proxy_curl /api/predict --data-binary "@$PROBE" -H 'Content-Type: image/png') \
    || { log "a prediction through Caddy failed"; return 1; }
  grep -q '"digit": *7' <<< "$answer" || { log "the probe seven was read as: $answer"; return 1; }
}

retire() { # retire <ids...>: SIGTERM, DRAIN_SECONDS for answers in flight, then gone
  [ $# -gt 0 ] || return 0
  docker stop --time "$DRAIN_SECONDS" "$@" >/dev/null
  docker rm -f "$@" >/dev/null
}

get_image() { # get_image <commit> [image]: mnist-digit-classifier:<commit>, pulled (CI's tested image) or built
  if [ -n "${2:-}" ]; then
    docker pull "$2" && docker tag "$2" "$IMAGE:$1"
  else
    docker build --pull -t "$IMAGE:$1" "$APP_DIR"
  fi
}

start_last_good() { # the last good release's replicas, started when none of the old ones still runs; their ids
  local before
  before=$(app_ids)
  APP_TAG=$last_good docker compose up -d --no-build --no-deps --no-recreate \
    --scale app="$(($(replicas) + $(wc -w <<< "$before")))" app >/dev/null 2>&1
  comm -13 <(echo "$before") <(app_ids) | tr '\n' ' '
}

rollback() { # rollback <reason>: back to the last good release; the new replicas go only once it serves
  local reason=$1 serving
  trap '' INT TERM HUP PIPE
  rolling_back=1
  log "FAILED: $reason; rolling back to ${last_good:-nothing (first deploy)}"
  if [ -z "$last_good" ]; then
    # shellcheck disable=SC2086 # one argument per container id
    retire $(alive "$new")
    log "no earlier release to roll back to: nothing is served until a deploy succeeds"; exit 1
  fi
  git -C "$APP_DIR" checkout --quiet --detach "$last_good"
  set_tag "$last_good"
  serving=$(alive "$old")
  # shellcheck disable=SC2086
  if [ -z "$serving" ] || ! healthy $serving; then serving=$(start_last_good); fi
  docker compose up -d --no-build --no-deps caddy >/dev/null 2>&1
  # shellcheck disable=SC2086
  if wait_healthy $serving && reachable $serving; then
    # shellcheck disable=SC2086
    retire $(alive "$new") # only now: the last good replicas are ready and the proxy reaches them
    serves && { log "rolled back to $last_good, and it serves through the proxy"; exit 1; }
    log "ROLLBACK UNHEALTHY: $last_good is ready but Caddy does not serve it; see docker compose logs caddy"; exit 2
  fi
  # shellcheck disable=SC2086
  if [ -n "$(alive "$new")" ] && healthy $(alive "$new"); then
    log "ROLLBACK UNHEALTHY: $last_good does not serve either; the new replicas are kept (the only healthy ones)"
  else
    log "ROLLBACK UNHEALTHY: $last_good does not serve either; see docker compose logs app caddy"
  fi
  exit 2
}

interrupted() { [ -n "$rolling_back" ] || rollback "interrupted by $1"; }

preflight() { # preflight: a clean checkout and the lock, or exit (nothing touched yet)
  local edited
  edited=$(git -C "$APP_DIR" status --porcelain --untracked-files=no 2>/dev/null)
  if [ -n "$edited" ]; then
    log "refusing to deploy: these tracked files are edited here, and a checkout would undo them:"
    log "$(awk '{print $NF}' <<< "$edited" | tr '\n' ' ')"
    log "move server settings to .env, secrets/ or docker-compose.override.yml (DEPLOYMENT.md, 4), then git checkout -- <file>"
    exit 65
  fi
  exec 9> "$STATE/lock"
  flock -n 9 || { log "another deploy is running (it holds $STATE/lock): not starting a second one"; exit 75; }
  if [ ! -e "$APP_DIR/secrets/operator_password" ]; then # Compose mounts it: an empty one means no operator view
    install -d -m 700 "$APP_DIR/secrets" && install -m 644 /dev/null "$APP_DIR/secrets/operator_password"
    log "made an empty secrets/operator_password (no operator view until you write a password into it)"
  fi
}

main() {
  if [ $# -eq 0 ] && [ -n "${SSH_ORIGINAL_COMMAND:-}" ]; then # the deploy key's forced command: "<commit> [image]"
    read -r -a words <<< "$SSH_ORIGINAL_COMMAND"; set -- "${words[@]}"
  fi
  local commit=${1:-} image=${2:-} n
  [[ $# -le 2 && "$commit" =~ ^[0-9a-f]{40}$ ]] || { log "usage: deploy.sh <40-hex commit> [image]"; exit 64; }
  [[ -z "$image" || "$image" =~ ^[a-z0-9.-]+(/[a-z0-9._-]+)+@sha256:[0-9a-f]{64}$ ]] \
    || { log "the image must be named by digest (registry/name@sha256:...)"; exit 64; }
  cd "$APP_DIR" || exit 1
  mkdir -p "$STATE"
  preflight
  trap 'interrupted INT' INT; trap 'interrupted TERM' TERM; trap 'interrupted HUP' HUP
  last_good=$(cat "$STATE/last-good" 2>/dev/null || true)
  old=$(app_ids | tr '\n' ' ')
  n=$(replicas)
  git fetch --quiet origin || rollback "git fetch failed"
  git checkout --quiet --detach "$commit" || rollback "commit $commit not found"
  get_image "$commit" "$image" || rollback "could not get the image for $commit"
  docker compose up -d --no-build --no-deps db || rollback "the database did not start"
  APP_TAG=$commit docker compose up -d --no-build --no-deps --no-recreate --scale app="$((n + $(wc -w <<< "$old")))" app
  local started=$?
  new=$(comm -13 <(echo "$old" | tr ' ' '\n' | sort) <(app_ids) | tr '\n' ' ')
  [ "$started" -eq 0 ] || rollback "docker compose up failed"
  [ -n "$new" ] || rollback "no new app container started"
  # shellcheck disable=SC2086 # one argument per container id
  wait_healthy $new || rollback "the new replicas were not ready within ${READY_SECONDS}s"
  set_tag "$commit"
  APP_TAG=$commit docker compose up -d --no-build --no-deps caddy || rollback "the proxy did not start"
  # shellcheck disable=SC2086
  reachable $new && serves || rollback "the new replicas do not serve through the proxy"
  # shellcheck disable=SC2086
  retire $old # the predecessors go only now that their successors serve
  serves || rollback "the proxy does not serve once the old replicas are gone"
  echo "$commit" > "$STATE/last-good"
  log "deployed $commit: $(wc -w <<< "$new") replica(s) serving through the proxy"
}

trap 'rm -f "$DEPLOY_RUNNING_COPY"' EXIT
main "$@"
