#!/usr/bin/env bash
# The main job on the bundled sample: finds PostgreSQL (or starts a
# throwaway one, see scripts/pg.sh), DROPS AND RE-CREATES the database
# $FHIRBULK_DEMO_DB (default fhirbulk_demo) there, loads the real FHIR
# sample of testdata/sample/ into it, and dumps it back: the Patients to
# stdout, four types to .ndjson.gz files.
# Usage: scripts/demo.sh [DIR]   the files go to DIR (made if missing, kept);
#                                without DIR to a temporary folder removed at
#                                the end, as is the fhirbulk binary it builds.
set -euo pipefail
here=$PWD
cd "$(dirname "$0")/.."
. scripts/pg.sh

[ $# -le 1 ] || die "usage: scripts/demo.sh [DIR]"
command -v go >/dev/null || die "Go is not installed (https://go.dev/dl/)"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/fhirbulk-demo.XXXXXX")
on_exit "rm -rf '$tmp'"
if [ $# = 1 ]; then
  case $1 in /*) out=$1 ;; *) out=$here/$1 ;; esac
  mkdir -p "$out"
else
  out=$tmp/dumps
  mkdir "$out"
fi
db=$(db_name FHIRBULK_DEMO_DB fhirbulk_demo)
ensure_pg
export DATABASE_URL
DATABASE_URL=$(db_url "$db")
say "== dropping and re-creating the database $db (whatever it holds is lost; FHIRBULK_DEMO_DB names another): $(shown_url "$DATABASE_URL")"
PGOPTIONS='-c client_min_messages=warning' psql -X -q "$PG_URL" -v ON_ERROR_STOP=1 \
  -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db"

say "== go build (into $tmp, removed at the end)"
go build -o "$tmp/fhirbulk" .
fhirbulk() { "$tmp/fhirbulk" "$@"; }

say "== fhirbulk load --fhir testdata/sample/*.ndjson (FHIR format, stored in Aidbox format)"
fhirbulk load --fhir testdata/sample/*.ndjson >&2

say "== fhirbulk dump Patient (stdout)"
fhirbulk dump Patient

say "== fhirbulk dump TYPE -o FILE.ndjson.gz"
for type in Patient Observation Condition ConceptMap; do
  fhirbulk dump "$type" -o "$out/$type.ndjson.gz" --force
done
ls -l "$out"/*.ndjson.gz >&2

if [ $# = 1 ]; then
  say "the dumps are in $out"
else
  say "the dumps were in a temporary folder, removed now (scripts/demo.sh DIR keeps them in DIR)"
fi
if [ -n "${PG_TMP:-}" ]; then
  say "the throwaway PostgreSQL stops now, and its data goes with it"
else
  say "the data stays in the database $db ($(shown_url "$DATABASE_URL"))"
fi
