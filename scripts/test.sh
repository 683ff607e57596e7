#!/usr/bin/env bash
# Runs the whole test suite: formatting, go vet, unit tests and the
# end-to-end testscripts (testdata/script/*.txtar), each script against a
# fresh database of its own on the server that scripts/pg.sh finds or starts.
# Extra arguments go to `go test` (e.g. -run TestScripts/dump).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/pg.sh

command -v go >/dev/null || die "Go is not installed (https://go.dev/dl/)"
unformatted=$(gofmt -l main.go cmd pkg)
[ -z "$unformatted" ] || die "gofmt needed: $unformatted"
go vet ./...

ensure_pg
need_psql # the dump-sql replay test runs psql, as a user would
export FHIRBULK_TEST_DATABASE_URL=$PG_URL
go test -count=1 "$@" ./...
