#!/usr/bin/env bash
# Benchmarks fhirbulk against psql on the same data in the same run (these
# machines are noisy: compare the ratios, not the seconds). A benchmark, not
# a test: it never fails for speed.
#
# Data: 1,011,108 Observations (810 MB ndjson) made by
#   ../shared/tools/amplify-ndjson 84 ../shared/data/synthea-hiv/Observation.ndjson.gz
# kept in $FHIRBULK_BENCH_DIR (default $TMPDIR/fhirbulk-bench) between runs.
# The database $FHIRBULK_BENCH_DB (default fhirbulk_bench) is DROPPED and made
# anew, several times, on the server scripts/pg.sh finds.
#
#   load    fhirbulk load --type Observation FILE into an empty table
#           vs psql \copy observation(id,txid,status,resource) of the same rows in final form
#   update  the same load again (every row an update), vs psql in one session: \copy of
#           (id, resource) into a temporary table, then UPDATE observation ... FROM it
#   at once two loads of the same 120,000 ids (every row an update) at the same time,
#           vs the same two one after the other
#   import  import --parallel 2 of that export folder, vs load of its files one by one
#   errors  load --max-errors 1000 of the Observations with 1,000 bad lines spread through
#           them, vs the clean file
#   sources 20,000 one-line sources in one load command, vs one file of the same lines;
#           and how much the system catalogs grew
#   fhir    load --fhir into an empty table, vs plain load
#   dump    fhirbulk dump Observation > /dev/null
#           vs psql \copy (select id, txid, ts, cts, resource from observation) to /dev/null (format binary)
#           and dump --fhir vs dump, on what load --fhir stored
#   dump-sql --format csv 'select id, resource from observation' > /dev/null
#           vs psql \copy (select id, resource from observation) to /dev/null (format csv, header)
#   convert convert --to aidbox / --to fhir of the same data, pinned to one core: MB/s
#   check   load of the Observations in Aidbox format (as dump wrote them) into an empty
#           table, with the format check (the first 1,000 lines) vs --no-format-check
#           (the other loads of the FHIR-format file here take --no-format-check: they
#           time the load path on the same bytes as ever)
#   import  import --parallel 2 of the 13 Synthea type files and the Observations (FHIR),
#           vs load --fhir of the same inputs one after another, into empty tables
#   buckets export --parallel 2 of the Observations to a local S3 server (scripts/s3bench)
#           vs to a folder (and peak RSS: the upload's parts); load and load --check of
#           an S3 object vs the same file
#   pull    import of a Bulk Data $export from a local server (scripts/bulkbench: the
#           Observations as two files, served from disk with a bearer token) into an empty
#           database, vs import of the same two files from a folder (both --parallel 2)
#   serve   fhirbulk serve: curl of GET /Observation/$dump (1M rows) vs fhirbulk dump to a file;
#           8 concurrent curls of it (the server's peak RSS); POST /Observation/$load of the
#           file (served by scripts/bulkbench) vs fhirbulk load of it
#   $export fhirbulk serve's HL7 $export: a system-level export of the 1M Observations
#           (their subjects made Patient/ID references) and their 60 Patients, kick-off to
#           last byte fetched with curl, vs fhirbulk export --fhir --parallel 2 to a folder;
#           a Group-level export of 10% of the patients, without and with an index on
#           (resource #>> '{subject,id}'), vs the system-level one (and the query plans)
#   export  export --parallel 2 of what import stored, vs psql \copy (binary, to /dev/null) of
#           every table one after another; --parallel 1 vs dump of every type one after
#           another; --gzip vs plain; dump --parallel 2 Observation vs one psql \copy
# Usage: scripts/bench.sh [RUNS]   (each measurement runs RUNS times, default 3, interleaved; medians shown)
#        FHIRBULK_BENCH_ONLY='$export' scripts/bench.sh [RUNS]   (that section alone)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/pg.sh

runs=${1:-3}
bench_db=$(db_name FHIRBULK_BENCH_DB fhirbulk_bench)
shared=$(cd .. && pwd)/shared
[ -x "$shared/tools/amplify-ndjson" ] || die "needs $shared/tools/amplify-ndjson and $shared/data"
command -v go >/dev/null || die "Go is not installed"
[ -x /usr/bin/time ] || apt_install time
command -v taskset >/dev/null || apt_install util-linux
ensure_pg
need_psql

dir=${FHIRBULK_BENCH_DIR:-${TMPDIR:-/tmp}/fhirbulk-bench}
mkdir -p "$dir"
bin="$dir/fhirbulk"
go build -o "$bin" .

obs="$dir/observations.ndjson"
if [ ! -s "$obs" ]; then
  say "generating $obs ..."
  "$shared/tools/amplify-ndjson" 84 "$shared/data/synthea-hiv/Observation.ndjson.gz" > "$obs.tmp"
  mv "$obs.tmp" "$obs"
fi
rows=$(wc -l < "$obs")
mb=$(( $(stat -c %s "$obs") / 1000000 ))

psql_admin() { PGOPTIONS='-c client_min_messages=warning' psql -q -X -v ON_ERROR_STOP=1 "$PG_URL" "$@"; }
say "dropping and re-creating the database $bench_db (whatever it holds is lost; FHIRBULK_BENCH_DB names another) on $(shown_url "$PG_URL")"
psql_admin -c "DROP DATABASE IF EXISTS $bench_db WITH (FORCE)" -c "CREATE DATABASE $bench_db"
db=$(db_url "$bench_db")
q() { PGOPTIONS='-c client_min_messages=warning' psql -q -X -v ON_ERROR_STOP=1 "$db" "$@"; }

# measure NAME CMD...: runs CMD (stdout to /dev/null), records "seconds maxrss_kb".
declare -A wall rss
measure() {
  local name=$1 out
  shift
  out=$(mktemp)
  /usr/bin/time -f '%e %M' -o "$out" "$@" > /dev/null
  read -r w r < "$out"
  rm -f "$out"
  wall[$name]="${wall[$name]:-} $w"
  rss[$name]="${rss[$name]:-} $r"
  say "  $name: ${w}s, $((r / 1024)) MiB"
}
median() { tr ' ' '\n' <<<"$1" | grep . | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
maxof() { tr ' ' '\n' <<<"$1" | grep . | sort -g | tail -n 1; }

copyopts="with (format csv, quote e'\\x01', delimiter e'\\x02')"
final="$dir/observations-final.csv"
fresh() { q -c 'TRUNCATE observation' -c 'CHECKPOINT'; }
settle() { q -c 'VACUUM observation' -c 'CHECKPOINT'; } # dead versions of the last update reused, not grown

# hl7_fetch KICKOFF OUTDIR: an HL7 Bulk Data client in curl: kick-off,
# polls as Retry-After says, every file of the manifest, then DELETE.
hl7_fetch() {
  local loc code out=$2
  mkdir -p "$out"
  loc=$(curl -sS --fail -D - -o /dev/null -H 'Prefer: respond-async' -H 'Accept: application/fhir+json' "$1" | sed -n 's/^Content-Location: //Ip' | tr -d '\r')
  [ -n "$loc" ] || return 1
  while :; do
    code=$(curl -sS -o "$out/manifest.json" -D "$out/headers" -w '%{http_code}' "$loc")
    [ "$code" = 200 ] && break
    [ "$code" = 202 ] || return 1
    sleep "$(sed -n 's/^Retry-After: //Ip' "$out/headers" | tr -d '\r')"
  done
  grep -o '"url": "[^"]*"' "$out/manifest.json" | sed 's/^"url": "//; s/"$//' | while read -r u; do
    curl -sS --fail -o "$out/${u##*/}" "$u" || return 1
  done
  curl -sS --fail -X DELETE -o /dev/null "$loc"
}

bench_hl7_export() {
  say "\$export: serve's HL7 \$export (system and Group level) vs export to a folder"
  local pobs="$dir/observations-patients.ndjson" out="$dir/hl7" log="$dir/serve-hl7.log" url pid
  # The Observations' subjects are urn:uuid: references (a transaction
  # Bundle's); made Patient/ID, as a server stores them, so that they are in
  # their patients' compartments.
  [ -s "$pobs" ] || sed 's/"subject":{"reference":"urn:uuid:/"subject":{"reference":"Patient\//' "$obs" > "$pobs"
  fresh_db
  "$bin" --db "$db" -q load --fhir --no-format-check --type Observation "$pobs" > /dev/null
  "$bin" --db "$db" -q load --fhir --type Patient "$shared/data/synthea-hiv/Patient.ndjson.gz" > /dev/null
  # A Group of 10% of the patients (6 of 60), chosen by the md5 of their ids.
  q -c "CREATE TABLE IF NOT EXISTS \"group\" (LIKE patient INCLUDING ALL)" \
    -c "INSERT INTO \"group\" (id, txid, status, resource_type, resource) SELECT 'tenth', nextval('transaction_id_seq'), 'created', 'Group',
          jsonb_build_object('type', 'person', 'actual', true, 'member', jsonb_agg(jsonb_build_object('entity', jsonb_build_object('resourceType', 'Patient', 'id', id))))
        FROM (SELECT id FROM patient ORDER BY md5(id) LIMIT (SELECT count(*) / 10 FROM patient)) p"
  # And a Group of one of them.
  q -c "INSERT INTO \"group\" (id, txid, status, resource_type, resource) SELECT 'one', nextval('transaction_id_seq'), 'created', 'Group',
          jsonb_build_object('type', 'person', 'actual', true, 'member', jsonb_build_array(jsonb_build_object('entity', jsonb_build_object('resourceType', 'Patient', 'id', id))))
        FROM (SELECT id FROM patient ORDER BY md5(id) LIMIT 1) p"
  q -c 'VACUUM ANALYZE' -c 'CHECKPOINT'
  hl7_one_rows=$(q -At -c "select count(*) from observation o where o.resource #>> '{subject,id}' = (select id from patient order by md5(id) limit 1)")
  hl7_rows=$(q -At -c "select count(*) from observation o where o.resource #>> '{subject,id}' in (select m->'entity'->>'id' from \"group\" g, jsonb_array_elements(g.resource->'member') m)")
  "$bin" --db "$db" serve --listen 127.0.0.1:0 --state-dir "$dir/state" --export-dir "$dir/hl7-jobs" --export-parallel 2 2> "$log" &
  pid=$!
  on_exit "kill $pid 2>/dev/null"
  for _ in $(seq 50); do grep -q 'listening on' "$log" 2>/dev/null && break; sleep 0.1; done
  url=$(sed -n 's/.*listening on \(http:[^,]*\),.*/\1/p' "$log")
  [ -n "$url" ] || die "fhirbulk serve did not start"
  mkdir -p "$out"
  # Each starts with the last one's files gone and written back (sync):
  # a GB of dirty pages from one would be written back during the next.
  clean() { rm -rf "$out/folder" "$out/http" "$out/group" && sync; }
  for _ in $(seq "$runs"); do
    clean
    measure "export --fhir --parallel 2 to a folder" "$bin" --db "$db" -q export --fhir --parallel 2 "$out/folder"
    clean
    measure "system-level \$export over HTTP (curl)" bash -c "$(declare -f hl7_fetch); hl7_fetch '$url/fhir/\$export' '$out/http'"
    sort "$out/http/Observation.ndjson" > "$out/http.sorted"
    clean
    measure "Group-level \$export of 10% of the patients" bash -c "$(declare -f hl7_fetch); hl7_fetch '$url/fhir/Group/tenth/\$export' '$out/group'"
    clean
    measure "Group-level \$export of one patient" bash -c "$(declare -f hl7_fetch); hl7_fetch '$url/fhir/Group/one/\$export' '$out/group'"
  done
  "$bin" --db "$db" -q export --fhir --parallel 2 "$out/folder"
  cmp -s <(sort "$out/folder/Observation.ndjson") "$out/http.sorted" || die "the served Observations differ from export's"
  # The plan of the Group's Observations, as the export reads them.
  go build -o "$dir/compartmentsql" ./scripts/compartmentsql
  local filter
  filter=$("$dir/compartmentsql" Observation $(q -At -c "select m->'entity'->>'id' from \"group\" g, jsonb_array_elements(g.resource->'member') m"))
  hl7_plan=$(q -At -c "EXPLAIN SELECT id, txid, ts, cts, resource FROM observation WHERE $filter" | grep -v '^ *Filter:' | head -n 6)
  # With the indexes fhirbulk types --compartment-indexes prints.
  "$bin" --db "$db" types --compartment-indexes | grep ' ON "observation" ' | q
  q -c 'ANALYZE observation'
  for _ in $(seq "$runs"); do
    clean
    measure "Group-level \$export, with the compartment's indexes" bash -c "$(declare -f hl7_fetch); hl7_fetch '$url/fhir/Group/tenth/\$export' '$out/group'"
    clean
    measure "Group-level \$export of one patient, with the indexes" bash -c "$(declare -f hl7_fetch); hl7_fetch '$url/fhir/Group/one/\$export' '$out/group'"
  done
  hl7_plan_indexed=$(q -At -c "EXPLAIN SELECT id, txid, ts, cts, resource FROM observation WHERE $filter" | grep -v '^ *\(Filter\|Recheck Cond\|Index Cond\):' | head -n 8)
  hl7_one=$("$dir/compartmentsql" Observation $(q -At -c "select m->'entity'->>'id' from \"group\" g, jsonb_array_elements(g.resource->'member') m limit 1"))
  hl7_plan_one=$(q -At -c "EXPLAIN SELECT id, txid, ts, cts, resource FROM observation WHERE $hl7_one" | grep -v '^ *\(Filter\|Recheck Cond\|Index Cond\):' | head -n 6)
  hl7_jobs=$(sed -n 's/.*msg="export done".* rows=\([0-9]*\) took=\([0-9.]*m*s\).*/\1 \2/p' "$log" |
    awk '{t = $2; if (t ~ /ms$/) {sub(/ms$/, "", t); t /= 1000} else sub(/s$/, "", t); print $1, t}')
  hl7_rss=$(sed -n 's/^VmHWM:[[:space:]]*\([0-9]*\) kB/\1/p' "/proc/$pid/status")
  kill "$pid" 2>/dev/null || true
  rm -rf "$out" "$dir/hl7-jobs"
}

hl7_summary() {
  row 'export --fhir --parallel 2 to a folder' 'export --fhir --parallel 2 to a folder'
  row 'system-level $export over HTTP (serve)' "system-level \$export over HTTP (curl)" 'export --fhir --parallel 2 to a folder'
  row 'Group-level $export, 10% of patients' "Group-level \$export of 10% of the patients" "system-level \$export over HTTP (curl)"
  row "... with the compartment's indexes" "Group-level \$export, with the compartment's indexes" "system-level \$export over HTTP (curl)"
  row 'Group-level $export, one patient' "Group-level \$export of one patient" "system-level \$export over HTTP (curl)"
  row "... with the compartment's indexes" "Group-level \$export of one patient, with the indexes" "system-level \$export over HTTP (curl)"
  printf 'the Group of 10%% holds %s of the %s Observations (%s%%), the one patient %s; fhirbulk serve peak RSS %s MiB\n' \
    "$hl7_rows" "$rows" "$(( hl7_rows * 100 / rows ))" "$hl7_one_rows" "$(( hl7_rss / 1024 ))"
  printf 'the jobs in the server (median seconds): system-level %s, Group of 10%% %s, Group of one %s\n' \
    "$(median "$(awk -v n="$rows" '$1 > n / 2 {print $2}' <<<"$hl7_jobs" | paste -sd' ')")" \
    "$(median "$(awk -v n="$hl7_rows" '$1 > n - 1000 && $1 < n + 1000 {print $2}' <<<"$hl7_jobs" | paste -sd' ')")" \
    "$(median "$(awk -v n="$hl7_rows" '$1 < n - 1000 {print $2}' <<<"$hl7_jobs" | paste -sd' ')")"
  printf 'the Group'"'"'s Observations, plan without indexes:\n%s\nwith them:\n%s\none patient of it, with them:\n%s\n' "$hl7_plan" "$hl7_plan_indexed" "$hl7_plan_one"
}

if [ "${FHIRBULK_BENCH_ONLY:-}" = '$export' ]; then
  fresh_db() { psql_admin -c "DROP DATABASE IF EXISTS $bench_db WITH (FORCE)" -c "CREATE DATABASE $bench_db"; }
  row() { # label name baseline
    local w b
    w=$(median "${wall[$2]}")
    if [ -n "${3:-}" ]; then b=$(median "${wall[$3]}"); ratio=$(awk -v a="$w" -v b="$b" 'BEGIN {printf "%.2fx", a / b}'); else ratio=""; fi
    printf '%-46s %9s %12s %8s\n' "$1" "$w" "$(( $(maxof "${rss[$2]}") / 1024 ))" "$ratio"
  }
  bench_hl7_export
  printf '\n%s Observations (%s MB ndjson); PostgreSQL %s; %s cores\n' "$rows" "$mb" "$(q -At -c 'show server_version')" "$(nproc)"
  printf '%-46s %9s %12s %8s\n' "what" "wall s" "peak RSS MiB" "ratio"
  hl7_summary
  exit 0
fi

say "load: $rows Observations, $mb MB; $runs rounds"
# The first load makes the table (and the baseline's file, once).
measure "fhirbulk load (empty table)" "$bin" --db "$db" -q load --no-format-check --type Observation "$obs"
if [ ! -s "$final" ]; then
  q -c "\\copy (select id, txid, status, resource from observation) to '$final.tmp' $copyopts"
  mv "$final.tmp" "$final"
fi
idres="$dir/observations-id-resource.csv"
if [ ! -s "$idres" ]; then
  q -c "\\copy (select id, resource from observation) to '$idres.tmp' $copyopts"
  mv "$idres.tmp" "$idres"
fi
psql_update=(psql -q -X "$db" -c 'create temp table s (id text, resource jsonb)' -c "\\copy s from '$idres' $copyopts"
  -c "update observation t set txid = nextval('transaction_id_seq'), ts = now(), status = 'updated', resource = s.resource from s where t.id = s.id")
for round in $(seq "$runs"); do
  if [ "$round" -gt 1 ]; then
    fresh
    measure "fhirbulk load (empty table)" "$bin" --db "$db" -q load --no-format-check --type Observation "$obs"
  fi
  fresh
  measure "psql \\copy final form (empty table)" psql -q -X "$db" -c "\\copy observation(id,txid,status,resource) from '$final' $copyopts"
  settle
  measure "psql stage + UPDATE ... FROM (all updates)" "${psql_update[@]}"
  settle
  measure "fhirbulk load (all updates)" "$bin" --db "$db" -q load --no-format-check --type Observation "$obs"
  fresh
  measure "fhirbulk load --fhir (empty table)" "$bin" --db "$db" -q load --fhir --type Observation "$obs"
done
say "two loads of the same 120,000 ids at once, vs one after the other"
# --fhir: the table holds what load --fhir stored, and the dump below reads
# it back as Aidbox format (loading the FHIR file without --fhir would store
# FHIR-format rows that convert and the format check then refuse).
part="$dir/observations-120k.ndjson"
[ -s "$part" ] || head -n 120000 "$obs" > "$part"
for _ in $(seq "$runs"); do
  settle
  measure "two loads, one after the other" bash -c "'$bin' --db '$db' -q load --fhir --type Observation '$part' && '$bin' --db '$db' -q load --fhir --type Observation '$part'"
  settle
  measure "two loads at once" bash -c "'$bin' --db '$db' -q load --fhir --type Observation '$part' & p=\$!; '$bin' --db '$db' -q load --fhir --type Observation '$part' && wait \$p"
done

q -c 'VACUUM FULL ANALYZE observation' -c 'CHECKPOINT'

say "dump (of what load --fhir stored): $runs runs each, alternating"
for _ in $(seq "$runs"); do
  measure "psql \\copy to /dev/null (binary)" psql -q -X "$db" -c "\\copy (select id, txid, ts, cts, resource from observation) to '/dev/null' with (format binary)"
  measure "fhirbulk dump" "$bin" --db "$db" -q dump Observation
  measure "fhirbulk dump --fhir" "$bin" --db "$db" -q dump --fhir Observation
  measure "psql \\copy csv to /dev/null" psql -q -X "$db" -c "\\copy (select id, resource from observation) to '/dev/null' with (format csv, header)"
  measure "fhirbulk dump-sql --format csv" "$bin" --db "$db" -q dump-sql --format csv 'select id, resource from observation'
done

say "convert, on one core"
aidbox="$dir/observations-aidbox.ndjson"
"$bin" --db "$db" dump Observation -o "$aidbox" --force
measure "convert --to aidbox" taskset -c 0 "$bin" convert --to aidbox "$obs"
measure "convert --to fhir" taskset -c 0 "$bin" convert --to fhir "$aidbox"
amb=$(( $(stat -c %s "$aidbox") / 1000000 ))

say "the format check: load of the Observations in Aidbox format into an empty table, with it and without"
for _ in $(seq "$runs"); do
  fresh
  measure "load (format check on)" "$bin" --db "$db" -q load --type Observation "$aidbox"
  fresh
  measure "load --no-format-check" "$bin" --db "$db" -q load --no-format-check --type Observation "$aidbox"
done

say "import: the 13 Synthea type files and the Observations, --parallel 2, vs loading them one by one"
manifest="$dir/import.yaml"
onebyone="$dir/load-one-by-one.sh"
: > "$onebyone"
{
  echo "inputFormat: application/fhir+ndjson"
  echo "inputs:"
} > "$manifest"
for f in "$shared"/data/synthea/*.ndjson.gz "$obs"; do
  t=$(basename "$f"); t=${t%%.*}
  case $t in all) continue ;; observations) t=Observation ;; esac
  printf -- '- {resourceType: %s, url: "%s"}\n' "$t" "$f" >> "$manifest"
  printf '"%s" --db "%s" -q load --fhir --type %s "%s" > /dev/null || exit 1\n' "$bin" "$db" "$t" "$f" >> "$onebyone"
done
fresh_db() { psql_admin -c "DROP DATABASE IF EXISTS $bench_db WITH (FORCE)" -c "CREATE DATABASE $bench_db"; }
fresh_db
measure "load, one input after another" bash "$onebyone"
fresh_db
measure "import --parallel 2" "$bin" --db "$db" -q import --allow-outside --parallel 2 --state-dir "$dir/state" --force "$manifest"

say "export of what import stored (14 types, 1M Observations): $runs runs each, alternating"
q -c 'VACUUM ANALYZE' -c 'CHECKPOINT'
tables=$(q -At -c "select relname from pg_class where relnamespace = 'public'::regnamespace and relkind = 'r' and relname !~ '_history$' and relname ~ '^[a-z]+$' order by 1")
copyall="$dir/copy-all.sh"
dumpall="$dir/dump-all.sh"
: > "$copyall"
: > "$dumpall"
for t in $tables; do
  printf 'psql -q -X "%s" -c "\\copy (select id, txid, ts, cts, resource from %s) to /dev/null with (format binary)" || exit 1\n' "$db" "$t" >> "$copyall"
  T=$(q -At -c "select resource_type from $t limit 1")
  printf '"%s" --db "%s" -q dump %s > /dev/null || exit 1\n' "$bin" "$db" "$T" >> "$dumpall"
done
exports="$dir/exports"
rm -rf "$exports" && mkdir -p "$exports"
for _ in $(seq "$runs"); do
  measure "psql \\copy binary of every table, one by one" bash "$copyall"
  measure "export --parallel 2" "$bin" --db "$db" -q export --parallel 2 --force "$exports/p2"
  measure "dump of every type, one by one" bash "$dumpall"
  measure "export --parallel 1" "$bin" --db "$db" -q export --parallel 1 --force "$exports/p1"
  measure "export --parallel 2 --gzip" "$bin" --db "$db" -q export --parallel 2 --gzip --force "$exports/gz"
  measure "psql \\copy binary of observation" psql -q -X "$db" -c "\\copy (select id, txid, ts, cts, resource from observation) to '/dev/null' with (format binary)"
  measure "dump --parallel 2 Observation" "$bin" --db "$db" -q dump --parallel 2 Observation
done

say "import of the export folder vs load of its files one by one, into empty databases"
loadall="$dir/load-export.sh"
: > "$loadall"
for f in "$exports"/p2/*.ndjson; do
  t=$(basename "$f" .ndjson)
  printf '"%s" --db "%s" -q load --type %s "%s" > /dev/null || exit 1\n' "$bin" "$db" "$t" "$f" >> "$loadall"
done
for _ in $(seq "$runs"); do
  fresh_db
  measure "load of the export's files, one by one" bash "$loadall"
  fresh_db
  measure "import of the export folder" "$bin" --db "$db" -q import --parallel 2 --state-dir "$dir/state" --force "$exports/p2"
done
rm -rf "$exports"

say "buckets: export to a local S3 server vs to a folder; load from it vs from a file"
mkdir -p "$exports"
# The S3 server is scripts/s3bench (gofakes3, objects in memory, in Go):
# moto_server, the tests' other S3, is Python and itself the bottleneck
# (export to it took 2.8x the folder's time on this data, most of it moto's CPU).
go build -o "$dir/s3bench" ./scripts/s3bench
s3log="$dir/s3bench.out"
"$dir/s3bench" bench > "$s3log" &
s3pid=$!
on_exit "kill $s3pid 2>/dev/null"
for _ in $(seq 50); do [ -s "$s3log" ] && break; sleep 0.1; done
[ -s "$s3log" ] || die "scripts/s3bench did not start"
export AWS_ENDPOINT_URL=$(head -n 1 "$s3log") AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench AWS_REGION=us-east-1 \
  AWS_EC2_METADATA_DISABLED=true AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null
fresh_db
"$bin" --db "$db" -q load --no-format-check --type Observation "$obs" > /dev/null
"$bin" --db "$db" -q dump Observation -o "$dir/dumped.ndjson" --force
"$bin" --db "$db" -q dump Observation -o s3://bench/dumped.ndjson --force
for i in $(seq "$runs"); do
  measure "export --parallel 2 to a folder" "$bin" --db "$db" -q export --parallel 2 --force "$exports/s3cmp"
  measure "export --parallel 2 to S3" "$bin" --db "$db" -q export --parallel 2 --force s3://bench/exp/
  measure "load --check of a file" "$bin" -q load --check --no-format-check --type Observation "$dir/dumped.ndjson"
  measure "load --check of an S3 object" "$bin" -q load --check --no-format-check --type Observation s3://bench/dumped.ndjson
  q -c 'DROP TABLE IF EXISTS observation, observation_history' > /dev/null
  measure "load of a file" "$bin" --db "$db" -q load --no-format-check --type Observation "$dir/dumped.ndjson"
  q -c 'DROP TABLE IF EXISTS observation, observation_history' > /dev/null
  measure "load of an S3 object" "$bin" --db "$db" -q load --no-format-check --type Observation s3://bench/dumped.ndjson
done
kill "$s3pid" 2>/dev/null || true
rm -rf "$exports" "$dir/dumped.ndjson"

say "pull: import of a server's \$export (scripts/bulkbench) vs import of the same files from a folder"
pulldir="$dir/pull"
if [ ! -s "$pulldir/Observation.2.ndjson" ]; then
  rm -rf "$pulldir" && mkdir -p "$pulldir"
  half=$(( (rows + 1) / 2 ))
  head -n "$half" "$obs" > "$pulldir/Observation.1.ndjson"
  tail -n +"$(( half + 1 ))" "$obs" > "$pulldir/Observation.2.ndjson"
fi
go build -o "$dir/bulkbench" ./scripts/bulkbench
bulklog="$dir/bulkbench.out"
"$dir/bulkbench" "$pulldir" > "$bulklog" &
bulkpid=$!
on_exit "kill $bulkpid 2>/dev/null"
for _ in $(seq 50); do [ -s "$bulklog" ] && break; sleep 0.1; done
[ -s "$bulklog" ] || die "scripts/bulkbench did not start"
kickoff="$(head -n 1 "$bulklog")/\$export"
printf 'bench\n' > "$dir/bench.token"
for _ in $(seq "$runs"); do
  fresh_db
  measure "import of the two files from a folder" "$bin" --db "$db" -q import --parallel 2 --state-dir "$dir/state" --force "$pulldir"
  fresh_db
  measure "import of the server's \$export" "$bin" --db "$db" -q import --parallel 2 --state-dir "$dir/state" --bearer-token-file "$dir/bench.token" "$kickoff"
done
kill "$bulkpid" 2>/dev/null || true

say "serve: \$dump over HTTP vs dump to a file; 8 at once; \$load over HTTP vs load"
fresh_db
"$bin" --db "$db" -q load --no-format-check --type Observation "$obs" > /dev/null
"$dir/bulkbench" "$pulldir" > "$bulklog" &
bulkpid=$!
on_exit "kill $bulkpid 2>/dev/null"
for _ in $(seq 50); do [ -s "$bulklog" ] && break; sleep 0.1; done
filebase="$(head -n 1 "$bulklog" | sed 's,/fhir$,,')/open"
servelog="$dir/serve.log"
"$bin" --db "$db" serve --listen 127.0.0.1:0 --max-concurrent 8 --state-dir "$dir/state" --allow-source "$filebase/" 2> "$servelog" &
servepid=$!
on_exit "kill $servepid 2>/dev/null"
for _ in $(seq 50); do grep -q 'listening on' "$servelog" 2>/dev/null && break; sleep 0.1; done
serveurl=$(sed -n 's/.*listening on \(http:[^,]*\),.*/\1/p' "$servelog")
[ -n "$serveurl" ] || die "fhirbulk serve did not start"
many_dumps() { for i in $(seq 8); do curl -sS --fail -o /dev/null "$serveurl/Observation/\$dump" & done; wait; }
for _ in $(seq "$runs"); do
  measure "fhirbulk dump Observation to a file" "$bin" --db "$db" -q dump Observation -o "$dir/served.ndjson" --force
  measure "curl GET /Observation/\$dump" curl -sS --fail -o "$dir/served-http.ndjson" "$serveurl/Observation/\$dump"
done
cmp -s "$dir/served.ndjson" "$dir/served-http.ndjson" || die "GET /Observation/\$dump differs from fhirbulk dump"
measure "8 curls of GET /Observation/\$dump at once" bash -c "$(declare -f many_dumps); serveurl='$serveurl'; many_dumps"
serve_rss=$(sed -n 's/^VmHWM:[[:space:]]*\([0-9]*\) kB/\1/p' "/proc/$servepid/status")
for _ in $(seq "$runs"); do
  q -c 'DROP TABLE IF EXISTS observation, observation_history' > /dev/null
  measure "fhirbulk load of the file over HTTP" "$bin" --db "$db" -q load --fhir --no-format-check --type Observation "$filebase/Observation.1.ndjson"
  q -c 'DROP TABLE IF EXISTS observation, observation_history' > /dev/null
  measure "POST /fhir/Observation/\$load of it" curl -sS --fail -o /dev/null -H 'Content-Type: application/json' \
    -d "{\"source\": \"$filebase/Observation.1.ndjson\"}" "$serveurl/fhir/Observation/\$load"
done
kill "$servepid" "$bulkpid" 2>/dev/null || true
rm -f "$dir/served.ndjson" "$dir/served-http.ndjson"

bench_hl7_export

say "--max-errors 1000 on $rows lines with 1,000 bad ones spread through them, vs the clean file"
dirty="$dir/observations-dirty.ndjson"
[ -s "$dirty" ] || awk '(NR % 1011) == 0 { print "{\"resourceType\":\"Observation\",\"bad\":" NR "}"; next } { print }' "$obs" > "$dirty"
for _ in $(seq "$runs"); do
  fresh_db
  measure "load of the clean file" "$bin" --db "$db" -q load --no-format-check --type Observation "$obs"
  fresh_db
  measure "load --max-errors 1000 of the dirty file" "$bin" --db "$db" -q load --no-format-check --type Observation --max-errors 1000 --errors "$dir/errors.ndjson" "$dirty"
  rm -f "$dir/errors.ndjson"
done

say "20,000 one-line sources in one load command, vs one file of the same lines"
small="$dir/small-sources"
if [ ! -d "$small" ]; then
  rm -rf "$small.tmp" && mkdir "$small.tmp"
  head -n 20000 "$obs" | (cd "$small.tmp" && split -l 1 -a 5 --additional-suffix=.ndjson - s.)
  mv "$small.tmp" "$small"
fi
lines20k="$dir/observations-20k.ndjson"
[ -s "$lines20k" ] || head -n 20000 "$obs" > "$lines20k"
catalog() { q -At -c "select sum(pg_total_relation_size(c.oid)) from pg_class c where c.relnamespace = 'pg_catalog'::regnamespace and c.relkind = 'r'"; }
fresh_db
cat_before=$(catalog)
measure "load of 20,000 one-line sources" "$bin" --db "$db" -q load --no-format-check --type Observation "$small"/s.*.ndjson
cat_growth=$(( ($(catalog) - cat_before) / 1024 ))
fresh_db
measure "load of the same lines as one file" "$bin" --db "$db" -q load --no-format-check --type Observation "$lines20k"

row() { # label name baseline
  local w b
  w=$(median "${wall[$2]}")
  if [ -n "${3:-}" ]; then b=$(median "${wall[$3]}"); ratio=$(awk -v a="$w" -v b="$b" 'BEGIN {printf "%.2fx", a / b}'); else ratio=""; fi
  printf '%-46s %9s %12s %8s\n' "$1" "$w" "$(( $(maxof "${rss[$2]}") / 1024 ))" "$ratio"
}
rate() { awk -v mb="$2" -v s="$(median "${wall[$1]}")" 'BEGIN {printf "%.0f MB/s", mb / s}'; }
printf '\n%s Observations (%s MB ndjson); PostgreSQL %s; %s cores\n' "$rows" "$mb" "$(q -At -c 'show server_version')" "$(nproc)"
printf '%-46s %9s %12s %8s\n' "what" "wall s" "peak RSS MiB" "ratio"
row 'psql \copy final form (load baseline)' 'psql \copy final form (empty table)'
row 'fhirbulk load --type Observation (empty)' 'fhirbulk load (empty table)' 'psql \copy final form (empty table)'
row 'psql stage + UPDATE ... FROM (update baseline)' 'psql stage + UPDATE ... FROM (all updates)'
row 'fhirbulk load --type Observation (updates)' 'fhirbulk load (all updates)' 'psql stage + UPDATE ... FROM (all updates)'
row 'fhirbulk load --fhir (empty) vs load' 'fhirbulk load --fhir (empty table)' 'fhirbulk load (empty table)'
row 'psql \copy binary (dump baseline)' 'psql \copy to /dev/null (binary)'
row 'fhirbulk dump Observation' 'fhirbulk dump' 'psql \copy to /dev/null (binary)'
row 'fhirbulk dump --fhir vs dump' 'fhirbulk dump --fhir' 'fhirbulk dump'
row 'psql \copy csv (dump-sql baseline)' 'psql \copy csv to /dev/null'
row 'fhirbulk dump-sql --format csv' 'fhirbulk dump-sql --format csv' 'psql \copy csv to /dev/null'
row 'convert --to aidbox (1 core)' 'convert --to aidbox'
row 'convert --to fhir (1 core)' 'convert --to fhir'
row 'load --no-format-check (Aidbox format)' 'load --no-format-check'
row 'load, format check on (first 1,000 lines)' 'load (format check on)' 'load --no-format-check'
row 'load of the 14 inputs, one by one' 'load, one input after another'
row 'import --parallel 2 of the same' 'import --parallel 2' 'load, one input after another'
row 'psql \copy binary per table (export baseline)' 'psql \copy binary of every table, one by one'
row 'export --parallel 2' 'export --parallel 2' 'psql \copy binary of every table, one by one'
row 'dump of every type, one by one' 'dump of every type, one by one'
row 'export --parallel 1 vs dumps one by one' 'export --parallel 1' 'dump of every type, one by one'
row 'export --parallel 2 --gzip vs plain' 'export --parallel 2 --gzip' 'export --parallel 2'
row 'psql \copy binary of observation' 'psql \copy binary of observation'
row 'dump --parallel 2 Observation' 'dump --parallel 2 Observation' 'psql \copy binary of observation'
row 'two loads of 120k ids, one after the other' 'two loads, one after the other'
row 'two loads of the same 120k ids at once' 'two loads at once' 'two loads, one after the other'
row 'load of the export files, one by one' "load of the export's files, one by one"
row 'import of the export folder (--parallel 2)' 'import of the export folder' "load of the export's files, one by one"
row 'export --parallel 2 to a folder (S3 baseline)' 'export --parallel 2 to a folder'
row 'export --parallel 2 to S3 (local, gofakes3)' 'export --parallel 2 to S3' 'export --parallel 2 to a folder'
row 'load --check of a file (read baseline)' 'load --check of a file'
row 'load --check of an S3 object' 'load --check of an S3 object' 'load --check of a file'
row 'load of a file (S3 baseline)' 'load of a file'
row 'load of an S3 object' 'load of an S3 object' 'load of a file'
row 'import of the same files from a folder' 'import of the two files from a folder'
row "import of a server's \$export (pull)" "import of the server's \$export" 'import of the two files from a folder'
row 'fhirbulk dump Observation to a file' 'fhirbulk dump Observation to a file'
row 'curl GET /Observation/$dump (serve)' 'curl GET /Observation/\$dump' 'fhirbulk dump Observation to a file'
row '8 curls of it at once (wall)' '8 curls of GET /Observation/\$dump at once'
row 'fhirbulk load of a file over HTTP' 'fhirbulk load of the file over HTTP'
row 'POST /fhir/Observation/$load of it (serve)' 'POST /fhir/Observation/\$load of it' 'fhirbulk load of the file over HTTP'
row 'load of the clean 1M-line file' 'load of the clean file'
row 'load --max-errors 1000, 1,000 bad lines' 'load --max-errors 1000 of the dirty file' 'load of the clean file'
row 'the same 20k lines as one file' 'load of the same lines as one file'
row 'the same 20k lines as 20k sources' 'load of 20,000 one-line sources' 'load of the same lines as one file'
hl7_summary
printf "fhirbulk serve's peak RSS after 8 concurrent dumps of the 1M Observations: %s MiB\n" "$(( serve_rss / 1024 ))"
printf 'the system catalogs grew by %s KiB during the load of 20,000 sources\n' "$cat_growth"
printf 'convert --to aidbox: %s; convert --to fhir: %s\n' "$(rate 'convert --to aidbox' "$mb")" "$(rate 'convert --to fhir' "$amb")"
