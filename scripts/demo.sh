#!/usr/bin/env bash
# The main job on the bundled sample: finds PostgreSQL (or starts a
# throwaway one), loads the real FHIR sample in testdata/sample/ into a
# database of its own (fhirbulk_demo, made anew), and dumps it back: the
# Patients to stdout, every type to a .ndjson.gz file in a temporary folder.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/pg.sh

command -v go >/dev/null || die "Go is not installed (https://go.dev/dl/)"
work=$(mktemp -d "${TMPDIR:-/tmp}/fhirbulk-demo.XXXXXX")
go build -o "$work/fhirbulk" .
fhirbulk() { "$work/fhirbulk" "$@"; }

ensure_pg
need_psql
PGOPTIONS='-c client_min_messages=warning' psql -q "$PG_URL" -v ON_ERROR_STOP=1 \
  -c 'DROP DATABASE IF EXISTS fhirbulk_demo WITH (FORCE)' -c 'CREATE DATABASE fhirbulk_demo'
export DATABASE_URL
DATABASE_URL=$(db_url fhirbulk_demo)

say "== fhirbulk load testdata/sample/*.ndjson"
fhirbulk load testdata/sample/*.ndjson >&2

say "== fhirbulk dump Patient (stdout)"
fhirbulk dump Patient

for type in Patient Observation Condition ConceptMap; do
  fhirbulk dump "$type" -o "$work/$type.ndjson.gz"
done
say "== fhirbulk dump TYPE -o FILE.ndjson.gz"
ls -l "$work"/*.ndjson.gz >&2
if [ -n "${PG_TMP:-}" ]; then
  say "the dumps are in $work (the throwaway server stops now)"
else
  say "the dumps are in $work; the data stays in the database fhirbulk_demo"
fi
