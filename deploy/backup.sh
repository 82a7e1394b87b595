#!/usr/bin/env bash
# A verified backup of the app's database, kept with mode 0600, with retention, copied off-site when configured, and
# loud when anything fails (exit status, a status file, an alert through Alertmanager, and BACKUP_ALERT_CMD).
#
#   make backup                               # where DATABASE_URL points (or PG* variables), into data/backups/
#   BACKUP_SOURCE=compose make backup         # the Compose database, through `docker compose exec db` (the server)
#   deploy/backup.sh restore-drill            # = make restore-drill: the newest dump into a throwaway database
#
# Settings: BACKUP_DIR (data/backups), BACKUP_KEEP (14 newest dumps kept), BACKUP_REMOTE (an rclone remote:path the
# dump is copied to; unset: local only), BACKUP_ALERTMANAGER (default http://127.0.0.1:9093, the monitoring
# profile's: a failure fires BackupFailed there, which reaches the operator's webhook like every other alert, and the
# next good backup resolves it; "off": none), BACKUP_ALERT_CMD (also run with the failure message as its argument). The dump is checked before it is kept: `pg_restore --list` reads it and holds the predictions' data, and
# the rows in it lie between the table's count before and after the dump. The restore drill loads it with
# --single-transaction --exit-on-error and compares the restored table, row for row, with the dump's own rows.
set -uo pipefail

APP_DIR=$(cd "$(dirname "$0")/.." && pwd)
BACKUP_DIR=${BACKUP_DIR:-$APP_DIR/data/backups}
BACKUP_KEEP=${BACKUP_KEEP:-14}
BACKUP_SOURCE=${BACKUP_SOURCE:-local}
umask 077

say() { printf '%s backup: %s\n' "$(date -u +%FT%TZ)" "$*" >&2; }

alert() { # alert <until> <summary>: BackupFailed in Alertmanager, firing until <until> (now: resolved); 0 if sent
  local url=${BACKUP_ALERTMANAGER:-http://127.0.0.1:9093} text=$2
  [ "$url" = off ] && return 0
  text=${text//\\/\/}; text=${text//\"/\'}; text=${text//$'\n'/ } # a JSON string: no quotes, backslashes, newlines
  curl -fsS --max-time 10 -H 'Content-Type: application/json' -d "[{\"labels\": {\"alertname\": \"BackupFailed\",
    \"severity\": \"critical\"}, \"annotations\": {\"summary\": \"$text\"}, \"endsAt\": \"$1\"}]" \
    "$url/api/v2/alerts" >/dev/null 2>&1
}

fail() {
  say "FAILED: $*"
  printf '{"ok": false, "at": "%s", "error": "%s"}\n' "$(date -u +%FT%TZ)" "${*//\"/\'}" > "$BACKUP_DIR/last-status.json"
  # Firing until the next nightly run says otherwise.
  alert "$(date -u -d '+1 day' +%FT%TZ)" "MNIST backup failed: $*" \
    || say "could not reach Alertmanager at ${BACKUP_ALERTMANAGER:-http://127.0.0.1:9093} (is the monitoring profile up?)"
  [ -n "${BACKUP_ALERT_CMD:-}" ] && $BACKUP_ALERT_CMD "MNIST backup failed: $*"
  exit 1
}

pg() { # pg <tool> [args]: a PostgreSQL client tool against the app's database (locally, or in the db container)
  local tool=$1; shift
  if [ "$BACKUP_SOURCE" = compose ]; then
    # The arguments travel as sh's positional parameters: no quoting of SQL through a second shell.
    (cd "$APP_DIR" && docker compose exec -T db sh -c 'exec "$0" -U "$POSTGRES_USER" -d "$POSTGRES_DB" "$@"' "$tool" "$@")
  elif [ -n "${DATABASE_URL:-}" ]; then
    "$tool" --dbname="$DATABASE_URL" "$@"
  else
    "$tool" "$@"
  fi
}

restore_tool() { # pg_restore on a dump file (stdin), here or in the db container
  if [ "$BACKUP_SOURCE" = compose ]; then (cd "$APP_DIR" && docker compose exec -T db pg_restore "$@"); else pg_restore "$@"; fi
}

dump_copy() { # the predictions rows a dump holds, as its COPY section has them (one line a row)
  restore_tool --data-only --table=predictions --file=- < "$1" | awk '/^COPY public.predictions /{on=1; next} /^\\\.$/{on=0} on'
}

dump_rows() { dump_copy "$1" | wc -l; }

backup() {
  mkdir -p "$BACKUP_DIR" && chmod 700 "$BACKUP_DIR" || fail "cannot create $BACKUP_DIR"
  local stamp file before after rows
  stamp=$(date -u +%Y%m%dT%H%M%SZ)
  file="$BACKUP_DIR/mnist-$stamp.dump"
  before=$(pg psql -XAtqc "SELECT count(*) FROM predictions") || fail "cannot count the rows (is the database up?)"
  pg pg_dump --format=custom --compress=6 > "$file.partial" || { rm -f "$file.partial"; fail "pg_dump failed"; }
  after=$(pg psql -XAtqc "SELECT count(*) FROM predictions") || after=$before
  restore_tool --list < "$file.partial" | grep -q "TABLE DATA public predictions" \
    || { rm -f "$file.partial"; fail "the dump cannot be read back, or holds no predictions data"; }
  rows=$(dump_rows "$file.partial")
  if [ "$rows" -lt "$before" ] || [ "$rows" -gt "$after" ]; then
    rm -f "$file.partial"; fail "the dump holds $rows rows; the table had $before before and $after after"
  fi
  mv "$file.partial" "$file" && chmod 600 "$file"
  sha256sum "$file" | sed "s#  $BACKUP_DIR/#  #" > "$file.sha256"
  if [ -n "${BACKUP_REMOTE:-}" ]; then
    rclone copy "$file" "$BACKUP_REMOTE" && rclone copy "$file.sha256" "$BACKUP_REMOTE" \
      || fail "the off-site copy to $BACKUP_REMOTE failed (the local dump $file is kept)"
  fi
  # Retention: the newest BACKUP_KEEP dumps stay.
  find "$BACKUP_DIR" -maxdepth 1 -name 'mnist-*.dump' | sort -r | tail -n +"$((BACKUP_KEEP + 1))" \
    | while read -r old; do rm -f "$old" "$old.sha256"; done
  printf '{"ok": true, "at": "%s", "file": "%s", "rows": %s, "bytes": %s}\n' "$(date -u +%FT%TZ)" \
    "$(basename "$file")" "$rows" "$(stat -c %s "$file")" > "$BACKUP_DIR/last-status.json"
  say "ok: $file ($rows rows, $(stat -c %s "$file") bytes, mode 600)"
  alert "$(date -u +%FT%TZ)" "MNIST backup: the last one succeeded" || true # resolves an earlier BackupFailed
}

restore_drill() { # the newest dump into a throwaway database on the same server; row for row against the dump
  local file drill restored dumped
  file=$(find "$BACKUP_DIR" -maxdepth 1 -name 'mnist-*.dump' | sort -r | head -1)
  [ -n "$file" ] || fail "no dump in $BACKUP_DIR to restore"
  sha256sum --check --status <(sed "s#  #  $BACKUP_DIR/#" "$file.sha256") || fail "$file does not match its checksum"
  drill="mnist_restore_drill_$(date -u +%Y%m%d%H%M%S)"
  pg psql -XAtqc "CREATE DATABASE $drill" || fail "cannot create the drill database $drill"
  if [ "$BACKUP_SOURCE" = compose ]; then
    (cd "$APP_DIR" && docker compose exec -T db sh -c \
      'exec pg_restore -U "$POSTGRES_USER" --single-transaction --exit-on-error --no-owner -d "$0"' "$drill") < "$file"
  else
    pg_restore --single-transaction --exit-on-error --no-owner --dbname="$(drill_dsn "$drill")" "$file"
  fi || { drop_drill "$drill"; fail "pg_restore of $file failed"; }
  dumped=$(dump_copy "$file" | md5sum | cut -d' ' -f1)
  restored=$(drill_copy "$drill" | md5sum | cut -d' ' -f1)
  rows=$(dump_rows "$file")
  drop_drill "$drill"
  [ "$dumped" = "$restored" ] || fail "the restored rows differ from the dump's ($restored != $dumped)"
  say "restore drill ok: $(basename "$file") restored into a throwaway database, $rows rows identical (md5 $dumped)"
}

drill_dsn() { # the drill database's connection string, locally
  if [ -n "${DATABASE_URL:-}" ]; then
    python3 -c 'import sys, urllib.parse as u; p = u.urlsplit(sys.argv[1]); print(p._replace(path="/" + sys.argv[2]).geturl()) if "://" in sys.argv[1] else print(sys.argv[1] + " dbname=" + sys.argv[2])' "$DATABASE_URL" "$1"
  else
    echo "dbname=$1"
  fi
}

drill_copy() { # the restored predictions, as COPY writes them (the dump's format)
  if [ "$BACKUP_SOURCE" = compose ]; then
    (cd "$APP_DIR" && docker compose exec -T db sh -c \
      'exec psql -XAtq -U "$POSTGRES_USER" -d "$0" -c "COPY public.predictions TO STDOUT"' "$1")
  else
    psql -XAtq --dbname="$(drill_dsn "$1")" -c 'COPY public.predictions TO STDOUT'
  fi
}

drop_drill() { pg psql -XAtqc "DROP DATABASE IF EXISTS $1" >/dev/null || say "could not drop $1"; }

case "${1:-backup}" in
  backup) backup ;;
  restore-drill) restore_drill ;;
  *) echo "usage: deploy/backup.sh [backup|restore-drill]" >&2; exit 64 ;;
esac
