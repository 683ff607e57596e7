# shellcheck shell=bash
# Sourced by the other scripts: find a PostgreSQL server, or start a
# throwaway one.
#
#   ensure_pg    sets PG_URL to a server's maintenance database (postgres):
#                  $FHIRBULK_TEST_DATABASE_URL, else $DATABASE_URL, else a
#                  server on 127.0.0.1:5432 (as the current OS user), else a
#                  throwaway cluster made with initdb in a temporary folder on
#                  a free port, stopped and removed when the script exits.
#                  FHIRBULK_THROWAWAY_PG=1 skips straight to the throwaway.
#   need_psql    makes sure psql is installed (Debian's client, as root).
#   db_url NAME  prints PG_URL with its database replaced by NAME.

say() { printf '%s\n' "$*" >&2; }
die() { say "$(basename "$0"): $*"; exit 1; }

apt_install() {
  [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null ||
    die "$* missing, and cannot install it (needs root and apt-get): install PostgreSQL or set FHIRBULK_TEST_DATABASE_URL"
  say "installing $* with apt-get ..."
  if [ -z "${APT_UPDATED:-}" ]; then
    apt-get update -qq >&2 || die "apt-get update failed"
    APT_UPDATED=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >&2 ||
    die "apt-get install $* failed"
}

need_psql() {
  command -v psql >/dev/null || apt_install postgresql-client
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

ensure_pg() {
  if [ -z "${FHIRBULK_THROWAWAY_PG:-}" ]; then
    if [ -n "${FHIRBULK_TEST_DATABASE_URL:-}" ]; then PG_URL=$FHIRBULK_TEST_DATABASE_URL; return; fi
    if [ -n "${DATABASE_URL:-}" ]; then PG_URL=$DATABASE_URL; return; fi
    if port_open 5432; then
      PG_URL="postgres://$(id -un)@127.0.0.1:5432/postgres?sslmode=disable"
      return
    fi
  fi
  start_throwaway_pg
}

pg_bindir() {
  ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1
}

start_throwaway_pg() {
  local bin port run=()
  bin=$(pg_bindir)
  if [ -z "$bin" ] || [ ! -x "$bin/initdb" ]; then
    apt_install postgresql
    bin=$(pg_bindir)
    [ -x "$bin/initdb" ] || die "no initdb after installing postgresql"
  fi
  PG_TMP=$(mktemp -d "${TMPDIR:-/tmp}/fhirbulk-pg.XXXXXX")
  trap stop_throwaway_pg EXIT
  # PostgreSQL refuses to run as root: run it as the postgres user.
  if [ "$(id -u)" = 0 ]; then
    id postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres
    chown postgres "$PG_TMP"
    run=(runuser -u postgres --)
  fi
  port=54329
  while port_open "$port"; do port=$((port + 1)); done
  "${run[@]}" "$bin/initdb" -D "$PG_TMP/data" -A trust -U postgres -E UTF8 --no-sync >/dev/null ||
    die "initdb failed"
  "${run[@]}" "$bin/pg_ctl" -D "$PG_TMP/data" -l "$PG_TMP/log" -w -t 60 \
    -o "-p $port -k $PG_TMP -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
    start >/dev/null || { cat "$PG_TMP/log" >&2; die "pg_ctl start failed"; }
  PG_STOP=("${run[@]}" "$bin/pg_ctl" -D "$PG_TMP/data" -m immediate stop)
  PG_URL="postgres://postgres@127.0.0.1:$port/postgres?sslmode=disable"
  say "started a throwaway PostgreSQL on 127.0.0.1:$port"
}

stop_throwaway_pg() {
  if [ -n "${PG_STOP+x}" ]; then
    "${PG_STOP[@]}" >/dev/null 2>&1
  fi
  [ -n "${PG_TMP:-}" ] && rm -rf "$PG_TMP"
}

db_url() {
  # postgres://user@host:port/db?query -> postgres://user@host:port/NAME?query
  printf '%s\n' "$PG_URL" | sed -E "s#^([a-z]+://[^/?]*)(/[^?]*)?#\\1/$1#"
}
