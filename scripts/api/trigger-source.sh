#!/usr/bin/env bash
# How another system starts the pipeline: tell Airflow that a knowledge-base source changed. Airflow 3's REST
# API, no Airflow client needed: a token from /auth/token, the source's Asset looked up by its URI, then an
# Asset event for it; the ingestion DAG (scheduled on every source Asset) starts. `pipeline trigger SOURCE`
# does the same from Python.
#
#   AIRFLOW_API_URL=https://airflow.example.com AIRFLOW_API_USERNAME=ci AIRFLOW_API_PASSWORD=... \
#       scripts/api/trigger-source.sh pipeline-docs
#
# Credentials only from the environment (a CI secret, a vault agent); none given: the local stack's
# all-admins token. Needs curl and python3 (for JSON).
set -euo pipefail

SOURCE="${1:?usage: $0 SOURCE_NAME}"
API="${AIRFLOW_API_URL:-http://127.0.0.1:8080}"
json() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }

if [[ -n "${AIRFLOW_API_USERNAME:-}" ]]; then
    TOKEN=$(python3 -c 'import json,os; print(json.dumps({"username": os.environ["AIRFLOW_API_USERNAME"], "password": os.environ.get("AIRFLOW_API_PASSWORD", "")}))' \
        | curl -sf -X POST "$API/auth/token" -H 'Content-Type: application/json' --data-binary @- | json '["access_token"]')
else
    TOKEN=$(curl -sf "$API/auth/token" | json '["access_token"]')
fi
auth=(-H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json')

URI="kb-source://$SOURCE"
ASSET_ID=$(curl -sf "${auth[@]}" "$API/api/v2/assets?uri_pattern=$(python3 -c 'import sys,urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$URI")" \
    | python3 -c "import json,sys; print(next(a['id'] for a in json.load(sys.stdin)['assets'] if a['uri'].rstrip('/') == sys.argv[1]))" "$URI")
curl -sf "${auth[@]}" -X POST "$API/api/v2/assets/events" \
    -d "{\"asset_id\": $ASSET_ID, \"extra\": {\"triggered_by\": \"scripts/api/trigger-source.sh\"}}" | json '["id"]' \
    | xargs -I{} echo "$URI: Asset event {} recorded; ingestion starts"
