# shellcheck shell=bash
# Sourced by the other scripts: find a PostgreSQL server, or start a
# throwaway one.
#
#   ensure_pg    sets PG_URL to a server's maintenance database (postgres)
#                and checks that it answers, or ends the script (status 1)
#                saying why:
#                  $FHIRBULK_TEST_DATABASE_URL, else $DATABASE_URL (used as
#                  given: one that does not answer is an error), else a
#                  server on 127.0.0.1:5432 as the current OS user, else a
#                  throwaway cluster made with initdb in a temporary folder
#                  on a free port, stopped and removed when the script
#                  exits (as root on Debian, the postgresql package is
#                  installed first when missing). FHIRBULK_THROWAWAY_PG=1
#                  skips straight to the throwaway.
#   need_psql    makes sure psql is installed (Debian's client, as root).
#   db_url NAME  prints PG_URL with its database replaced by NAME.
#   db_name VAR DEFAULT [MAX]  prints $VAR, else DEFAULT, after checking it
#                is a plain lowercase identifier (a-z, 0-9, _; at most MAX
#                bytes, default 63), so it needs no quoting in SQL or URLs.
#   shown_url U  prints URL U without its password, for messages.
#   on_exit CMD  runs CMD when the script exits (also on Ctrl-C), after
#                the commands registered later.

say() { printf '%s\n' "$*" >&2; }
die() {
  say "$(basename "$0"): $*"
  exit 1
}

ON_EXIT=()
on_exit() {
  ON_EXIT=("$*" "${ON_EXIT[@]}")
  trap run_on_exit EXIT
  # Without these a signal ends bash without its EXIT trap.
  trap 'exit 130' INT
  trap 'exit 143' TERM
}
run_on_exit() {
  local cmd
  for cmd in "${ON_EXIT[@]}"; do
    eval "$cmd" || true
  done
}

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

shown_url() {
  # scheme://user:password@host → scheme://user:…@host; password=… in a keyword/value string too
  printf '%s\n' "$1" | sed -E -e 's#^([A-Za-z][A-Za-z0-9+.-]*://[^:/@?]*):[^@/?]*@#\1:…@#' -e 's#(password=)[^ &]*#\1…#g'
}

# pg_answers URL: the server at URL takes a connection and a query; else
# prints psql's error on stderr and fails.
pg_answers() {
  PGCONNECT_TIMEOUT=10 psql -X -q -At -d "$1" -c 'SELECT 1' >/dev/null
}

ensure_pg() {
  need_psql
  local from
  if [ -z "${FHIRBULK_THROWAWAY_PG:-}" ]; then
    if [ -n "${FHIRBULK_TEST_DATABASE_URL:-}" ]; then
      PG_URL=$FHIRBULK_TEST_DATABASE_URL from=FHIRBULK_TEST_DATABASE_URL
    elif [ -n "${DATABASE_URL:-}" ]; then
      PG_URL=$DATABASE_URL from=DATABASE_URL
    fi
    if [ -n "${from:-}" ]; then
      pg_answers "$PG_URL" ||
        die "no PostgreSQL answers at $from=$(shown_url "$PG_URL") (psql's message above): start it, or fix or unset $from (FHIRBULK_THROWAWAY_PG=1 starts a throwaway server instead)"
      say "PostgreSQL: $(shown_url "$PG_URL") (from $from)"
      return
    fi
    if port_open 5432; then
      PG_URL="postgres://$(id -un)@127.0.0.1:5432/postgres?sslmode=disable"
      if pg_answers "$PG_URL"; then
        say "PostgreSQL: $PG_URL"
        return
      fi
      say "the PostgreSQL on 127.0.0.1:5432 does not let $(id -un) in (psql's message above): starting a throwaway one instead (FHIRBULK_TEST_DATABASE_URL names a server to use)"
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
  on_exit stop_throwaway_pg
  # PostgreSQL refuses to run as root: run it as the postgres user.
  if [ "$(id -u)" = 0 ]; then
    id postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres
    chown postgres "$PG_TMP"
    run=(runuser -u postgres --)
  fi
  port=54329
  while port_open "$port"; do port=$((port + 1)); done
  "${run[@]}" "$bin/initdb" -D "$PG_TMP/data" -A trust -U postgres -E UTF8 --no-sync >"$PG_TMP/initdb.log" 2>&1 ||
    { cat "$PG_TMP/initdb.log" >&2; die "initdb failed"; }
  "${run[@]}" "$bin/pg_ctl" -D "$PG_TMP/data" -l "$PG_TMP/log" -w -t 60 \
    -o "-p $port -k $PG_TMP -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
    start >/dev/null || { cat "$PG_TMP/log" >&2; die "pg_ctl start failed"; }
  PG_STOP=("${run[@]}" "$bin/pg_ctl" -D "$PG_TMP/data" -m immediate stop)
  PG_URL="postgres://postgres@127.0.0.1:$port/postgres?sslmode=disable"
  pg_answers "$PG_URL" || { cat "$PG_TMP/log" >&2; die "the throwaway PostgreSQL on 127.0.0.1:$port does not answer"; }
  say "started a throwaway PostgreSQL $("$bin/postgres" --version | awk '{print $3}') on 127.0.0.1:$port (stopped and removed on exit)"
}

stop_throwaway_pg() {
  if [ -n "${PG_STOP+x}" ]; then
    "${PG_STOP[@]}" >/dev/null 2>&1
  fi
  if [ -n "${PG_TMP:-}" ]; then rm -rf "$PG_TMP"; fi
}

db_url() {
  # postgres://user@host:port/db?query -> postgres://user@host:port/NAME?query
  printf '%s\n' "$PG_URL" | sed -E "s#^([a-z]+://[^/?]*)(/[^?]*)?#\\1/$1#"
}

db_name() {
  local name=${!1:-$2} max=${3:-63}
  [[ $name =~ ^[a-z_][a-z0-9_]*$ ]] && [ ${#name} -le "$max" ] ||
    die "$1=$name: want a database name of 1 to $max of a-z, 0-9 and _, not starting with a digit"
  printf '%s\n' "$name"
}
