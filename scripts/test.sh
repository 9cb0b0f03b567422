#!/usr/bin/env bash
# Set up and run the whole test suite: lint, then every test on SQLite and on PostgreSQL (a throwaway
# cluster on loopback, made by Debian's pg_virtualenv), the two backends at the same time, each spread over
# worker processes (pytest-xdist). Installs Debian's postgresql, postfix, dovecot, swaks and chromium when
# missing.
# Extra arguments go to both pytest runs (e.g. `scripts/test.sh tests/test_pipe.py -x`).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
installed_here=.venv/.maild-system-packages  # what this script installed, for tests/test_system_services.py

# Debian packages the tests need. A package installed here must not become a running network service of the
# machine: its service is neither started by the install (policy-rc.d) nor enabled afterwards, and Postfix's
# and Dovecot's own configs listen on loopback only. Each test starts private instances of its own.
install_packages() {
  local policy=/usr/sbin/policy-rc.d added_policy=""
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | as_root tee "$policy" >/dev/null
    as_root chmod 0755 "$policy"
    added_policy=1
  fi
  # Postfix's "Local only": inet_interfaces = loopback-only in the system's main.cf from the start.
  echo "postfix postfix/main_mailer_type select Local only" | as_root debconf-set-selections
  echo "postfix postfix/mailname string localhost" | as_root debconf-set-selections
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
  [ -z "$added_policy" ] || as_root rm -f "$policy"
  for package in "$@"; do
    case "$package" in
      postgresql) service=postgresql ;;
      postfix)
        service=postfix
        as_root postconf -e inet_interfaces=loopback-only
        ;;
      dovecot-imapd)
        service=dovecot
        printf 'listen = 127.0.0.1, ::1\n' | as_root tee /etc/dovecot/conf.d/99-loopback-only.conf >/dev/null
        ;;
      *) continue ;;
    esac
    if command -v systemctl >/dev/null; then
      as_root systemctl disable --quiet "$service" 2>/dev/null || true
    fi
    if command -v update-rc.d >/dev/null; then
      as_root update-rc.d -f "$service" disable >/dev/null 2>&1 || true
    fi
    as_root service "$service" stop >/dev/null 2>&1 || true
    echo "$service" >> "$installed_here"
  done
}

missing=()
if ! command -v pg_virtualenv >/dev/null || ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  missing+=(postgresql postgresql-common)
fi
# The end-to-end tests talk to real mail servers: Postfix as the MTA, Dovecot for IMAP and mailboxes, swaks as
# the customer's client.
command -v postfix >/dev/null || missing+=(postfix)
command -v dovecot >/dev/null || missing+=(dovecot-imapd dovecot-lmtpd)
command -v swaks >/dev/null || missing+=(swaks)
if [ ${#missing[@]} -gt 0 ]; then
  echo "test: installing ${missing[*]} from Debian's packages (their system services left disabled, on loopback)" >&2
  install_packages "${missing[@]}"
fi
# The browser tests (tests/test_web_browser.py) drive Debian's Chromium through Debian's chromedriver (one
# source package: their versions always match). Without recommends: those bring avahi-daemon, upower, cups
# helpers and the like, none of which a headless browser needs. Liberation fonts: screenshots as in docs/.
browser=()
command -v chromium >/dev/null || browser+=(chromium)
command -v chromedriver >/dev/null || browser+=(chromium-driver)
[ -e /usr/share/fonts/truetype/liberation ] || browser+=(fonts-liberation)
if [ ${#browser[@]} -gt 0 ]; then
  echo "test: installing ${browser[*]} from Debian's packages" >&2
  install_packages --no-install-recommends "${browser[@]}"
fi
# Tests that need one of these servers fail instead of skipping when it is missing.
export MAILD_REQUIRE_SERVERS=1

# Static checks first (seconds): lint, formatting, the import layers (pyproject's [tool.importlinter]),
# types (pyproject's [tool.mypy]).
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/lint-imports --no-cache
.venv/bin/mypy

# Two backends at once, each over worker processes: most tests wait on servers, subprocesses and fsync
# rather than compute, so 2 cores carry 3 workers per backend. The output of each run is kept in a log and
# printed whole when both are done.
workers=${MAILD_TEST_WORKERS:-3}
logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
started=$(date +%s)
MAILD_TEST_DB=sqlite .venv/bin/pytest -q -n "$workers" -p no:cacheprovider --basetemp="$logs/sqlite" "$@" \
  >"$logs/sqlite.log" 2>&1 &
sqlite_run=$!
# pg_virtualenv starts a temporary cluster on localhost, exports PGHOST/PGPORT/PGUSER/PGPASSWORD, runs the
# command, and removes the cluster afterwards.
pg_virtualenv -i '-A trust' sh -c 'workers=$1 logs=$2; shift 2
  MAILD_TEST_DB="postgresql://$PGUSER:$PGPASSWORD@$PGHOST:$PGPORT/postgres" exec .venv/bin/pytest -q \
    -n "$workers" -p no:cacheprovider --basetemp="$logs/postgresql" "$@"' sh "$workers" "$logs" "$@" \
  >"$logs/postgresql.log" 2>&1 &
postgresql_run=$!
status=0
wait "$sqlite_run" || status=1
echo "== tests on SQLite"; cat "$logs/sqlite.log"
wait "$postgresql_run" || status=1
echo "== tests on PostgreSQL"; cat "$logs/postgresql.log"
echo "== both backends in $(( $(date +%s) - started )) s"
exit "$status"
