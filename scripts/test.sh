#!/usr/bin/env bash
# Runs every check of the project (the README's test command, and CI's),
# stopping at the first that fails with a line naming it. The tests come
# early, so a first run on a cold cache says whether the code works before
# it builds for other platforms:
#   0. finds the PostgreSQL server (scripts/pg.sh: found or started; none
#      reachable ends it here, saying why) and psql, and says which
#      databases the tests make and drop there: one per test script, named
#      $FHIRBULK_TEST_DB_PREFIX (default fhirbulk_test), _ and 8 hex digits;
#      moto_server (Python's moto, for the s3 testscripts) must be installed;
#      Azurite (npm's azurite, for the azblob testscripts) is installed once
#      into $FHIRBULK_TOOLS_DIR when missing, and s3cmd (Debian's, another
#      S3 client the s3 testscripts read back with) with apt-get when root
#   1. gofmt; go vet for this platform
#   2. the tests: unit tests beside the code in pkg/ and the end-to-end
#      testscripts (testdata/script/*.txtar, each against a fresh database of
#      its own). Under -race as FHIRBULK_TEST_RACE says:
#        pkg   the packages of pkg/; the rest without (the default)
#        all   every package, the testscripts too, so every fhirbulk they run
#              is race-checked (on 2 cores about 170 s instead of 55 s)
#        none  nothing
#   3. go vet for the other platforms of linux, darwin and windows;
#      staticcheck (pinned below, installed once into $FHIRBULK_TOOLS_DIR,
#      default ~/.cache/fhirbulk/tools) for the three
#   4. a cross-build: go build ./... for {linux,darwin,windows}/{amd64,arm64}
# At the end, how long each step took.
# Extra arguments go to every `go test` (e.g. -run TestScripts/dump).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/pg.sh

# staticcheck 2026.2.2, the newest the Go module proxy serves; it needs a Go
# at least as new as the code's go line, so the cache is per Go version too.
STATICCHECK_VERSION=v0.8.2
# Azurite 3.35.0, the newest that runs on Node.js 20 (3.36 wants 21, 3.37
# 22); cmd/azurite_test.go names the same version when it is missing.
AZURITE_VERSION=3.35.0
TOOLS_DIR=${FHIRBULK_TOOLS_DIR:-${XDG_CACHE_HOME:-${HOME:-${TMPDIR:-/tmp}}/.cache}/fhirbulk/tools}
GOOSES=(linux darwin windows)
GOARCHES=(amd64 arm64)

command -v go >/dev/null || die "Go is not installed (https://go.dev/dl/)"
race=${FHIRBULK_TEST_RACE:-pkg}
case $race in pkg | all | none) ;; *) die "FHIRBULK_TEST_RACE=$race: want pkg, all or none" ;; esac

start=$SECONDS
times=()
# step NAME CMD...: runs CMD, and notes how long it took.
step() {
  local name=$1 t0=$SECONDS
  shift
  say "== $name"
  "$@" || die "$name failed"
  times+=("$name $((SECONDS - t0))s")
}

gofmt_check() {
  local unformatted
  unformatted=$(gofmt -l .) || return 1
  [ -z "$unformatted" ] || {
    say "gofmt -w needed:" "$unformatted"
    return 1
  }
}

# vet_others: go vet for the platforms of GOOSES other than this one.
vet_others() {
  local os
  for os in "${GOOSES[@]}"; do
    [ "$os" = "$(go env GOHOSTOS)" ] || GOOS=$os go vet ./... || return 1
  done
}

staticcheck_all() {
  local goversion dir os
  goversion=$(go env GOVERSION)
  dir=$TOOLS_DIR/staticcheck-$STATICCHECK_VERSION-$goversion
  if [ ! -x "$dir/staticcheck" ]; then
    say "installing staticcheck $STATICCHECK_VERSION into $dir ..."
    GOBIN=$dir GOOS= GOARCH= go install "honnef.co/go/tools/cmd/staticcheck@$STATICCHECK_VERSION" || return 1
  fi
  for os in "${GOOSES[@]}"; do
    GOOS=$os "$dir/staticcheck" ./... || return 1
  done
}

# ensure_azurite: FHIRBULK_AZURITE, the azurite-blob the tests start (the
# azurite script command), installed from npm into TOOLS_DIR when missing.
ensure_azurite() {
  local dir=$TOOLS_DIR/azurite-$AZURITE_VERSION
  if [ -n "${FHIRBULK_AZURITE:-}" ]; then
    [ -x "$FHIRBULK_AZURITE" ] || die "FHIRBULK_AZURITE=$FHIRBULK_AZURITE: not an executable (want the path of Azurite's azurite-blob)"
    return
  fi
  if [ ! -x "$dir/node_modules/.bin/azurite-blob" ]; then
    command -v npm >/dev/null ||
      die "npm missing: the azblob tests run Azurite, installed from npm; install Node.js 20 or later with npm"
    say "installing Azurite $AZURITE_VERSION into $dir ..."
    npm install --prefix "$dir" --no-audit --no-fund --loglevel=error "azurite@$AZURITE_VERSION" >&2 ||
      die "npm install azurite@$AZURITE_VERSION failed"
  fi
  export FHIRBULK_AZURITE=$dir/node_modules/.bin/azurite-blob
}

# ensure_s3cmd: s3cmd, installed with apt-get when missing and root (the
# scripts' s3cmd checks are skipped without it, so this only says so).
ensure_s3cmd() {
  command -v s3cmd >/dev/null && return
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    say "installing s3cmd (apt-get) ..."
    { apt-get install -y -q s3cmd || { apt-get update -q && apt-get install -y -q s3cmd; }; } >/dev/null 2>&1 ||
      say "apt-get install s3cmd failed: the s3 scripts' s3cmd checks are skipped"
  else
    say "s3cmd missing (apt-get install s3cmd): the s3 scripts' s3cmd checks are skipped"
  fi
}

cross_build() {
  local os arch
  for os in "${GOOSES[@]}"; do
    for arch in "${GOARCHES[@]}"; do
      GOOS=$os GOARCH=$arch CGO_ENABLED=0 go build ./... || {
        say "go build failed for $os/$arch"
        return 1
      }
    done
  done
}

# The server first: without one nothing below is worth waiting for.
t0=$SECONDS
prefix=$(db_name FHIRBULK_TEST_DB_PREFIX fhirbulk_test 40)
ensure_pg # psql too: the dump-sql replay test runs it, as a user would
times+=("PostgreSQL $((SECONDS - t0))s")
# The S3 testscripts start moto_server themselves; without it they would
# fail late, so say it now.
command -v moto_server >/dev/null ||
  die "moto_server missing: the s3 tests run against it; install it with: pip install 'moto[server]'"
t0=$SECONDS
ensure_azurite
ensure_s3cmd
times+=("Azurite, s3cmd $((SECONDS - t0))s")
export FHIRBULK_TEST_DATABASE_URL=$PG_URL
say "the tests create and drop databases named ${prefix}_* (FHIRBULK_TEST_DB_PREFIX names another prefix) on $(shown_url "$PG_URL")"

step gofmt gofmt_check
step "go vet ($(go env GOHOSTOS))" go vet ./...

case $race in
all)
  step "go test -race ./..." go test -race -count=1 -timeout 30m "$@" ./...
  ;;
pkg)
  module=$(go list -m)
  mapfile -t rest < <(go list ./... | grep -v "^$module/pkg/" | sed "s#^$module#.#")
  step "go test -race ./pkg/..." go test -race -count=1 "$@" ./pkg/...
  step "go test ${rest[*]}" go test -count=1 "$@" "${rest[@]}"
  ;;
none)
  step "go test ./..." go test -count=1 "$@" ./...
  ;;
esac

step "go vet (the others of ${GOOSES[*]})" vet_others
step "staticcheck (${GOOSES[*]})" staticcheck_all
step "go build (${GOOSES[*]} x ${GOARCHES[*]})" cross_build

say "test.sh: everything passed in $((SECONDS - start))s (FHIRBULK_TEST_RACE=$race):"
for t in "${times[@]}"; do say "  $t"; done
