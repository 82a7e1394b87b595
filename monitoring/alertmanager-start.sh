#!/bin/sh
# The Alertmanager container's entrypoint: monitoring/alertmanager.yml with ALERT_WEBHOOK_URL in the placeholder's
# place, written where the container keeps no data (its tmpfs), then Alertmanager on it. Refuses to start without
# the URL, so an alert never goes nowhere in silence.
#   ALERT_WEBHOOK_URL=https://ntfy.sh/<topic> monitoring/alertmanager-start.sh --web.listen-address=:9093
# The test (tests/deploy/test_alerting.py) runs this very script with Debian's binary: ALERTMANAGER names it, and
# ALERTMANAGER_CONFIG_IN/OUT the files.
set -eu
in=${ALERTMANAGER_CONFIG_IN:-/etc/alertmanager/alertmanager.yml}
out=${ALERTMANAGER_CONFIG_OUT:-/tmp/alertmanager.yml}
url=${ALERT_WEBHOOK_URL:-}
case "$url" in
  http://*|https://*) ;;
  *) echo "alertmanager: set ALERT_WEBHOOK_URL in .env (an https:// webhook: DEPLOYMENT.md, \"Alerts\")" >&2; exit 2 ;;
esac
# sed's replacement treats & \ and the delimiter specially: escape them in the URL.
escaped=$(printf '%s' "$url" | sed 's/[&|\\]/\\&/g')
umask 077
sed "s|http://alert-webhook.invalid/|$escaped|" "$in" > "$out"
exec "${ALERTMANAGER:-/bin/alertmanager}" --config.file="$out" "$@"
