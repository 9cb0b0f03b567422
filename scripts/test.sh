#!/usr/bin/env bash
# Set up and run the whole test suite: lint, then every test on SQLite and again on PostgreSQL
# (a throwaway cluster on loopback, made by Debian's pg_virtualenv; installed here when missing).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
if ! command -v pg_virtualenv >/dev/null || ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  echo "test: installing PostgreSQL from Debian's packages" >&2
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql postgresql-common >/dev/null
fi

# The end-to-end tests talk to real mail servers: Postfix as the MTA, Dovecot for IMAP and mailboxes, swaks as
# the customer's client. Each test starts its own instance on loopback with a config under a temporary directory;
# the packages' own services are not used.
missing=()
command -v postfix >/dev/null || missing+=(postfix)
command -v dovecot >/dev/null || missing+=(dovecot-imapd dovecot-lmtpd)
command -v swaks >/dev/null || missing+=(swaks)
if [ ${#missing[@]} -gt 0 ]; then
  echo "test: installing ${missing[*]} from Debian's packages" >&2
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
# Tests that need one of these servers fail instead of skipping when it is missing.
export MAILD_REQUIRE_SERVERS=1

.venv/bin/ruff check .

echo "== tests on SQLite"
MAILD_TEST_DB=sqlite .venv/bin/pytest -q "$@"

echo "== tests on PostgreSQL"
# pg_virtualenv starts a temporary cluster on localhost, exports PGHOST/PGPORT/PGUSER/PGPASSWORD,
# runs the command, and removes the cluster afterwards.
pg_virtualenv -i '-A trust' sh -c \
  'MAILD_TEST_DB="postgresql://$PGUSER:$PGPASSWORD@$PGHOST:$PGPORT/postgres" .venv/bin/pytest -q "$@"' sh "$@"
