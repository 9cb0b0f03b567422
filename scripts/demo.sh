#!/usr/bin/env bash
# Set up maild on the embedded default (SQLite, outgoing mail to a local Maildir) in ./demo-data and
# show the mail → ticket → auto-reply path: init, add a desk, pipe sample mails, list the tickets.
# MAILD_DEMO_DIR: where (default ./demo-data).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
demo=${MAILD_DEMO_DIR:-$PWD/demo-data}  # the tests run the demo in a directory of their own
mkdir -p "$demo"
export MAILD_CONFIG="$demo/maild.toml"
if [ ! -f "$MAILD_CONFIG" ]; then
  # The customers' ticket pages on loopback: the links in the auto-replies open there.
  printf 'data_dir = "%s/data"\n\n[web]\nlisten = "127.0.0.1:8025"\npublic_url = "http://127.0.0.1:8025"\n' \
    "$demo" > "$MAILD_CONFIG"
fi

maildctl init
maildctl desk show support >/dev/null 2>&1 \
  || maildctl desk add support --address support@example.com --pattern 'SUP-{{yy}}-{{mm}}-{{nr-m}}'

for mail in docs/samples/*.eml; do
  code=0; maild pipe --recipient support@example.com < "$mail" || code=$?
  echo "piped $(basename "$mail"): exit $code"
done

# `maild pipe` only spools a mail (fsynced, committed) and hands it on to a worker it starts: wait until
# every spooled mail is processed and every outgoing mail is in the Maildir.
wait_for_pipeline() {
  for _ in $(seq 120); do
    # (health exits 1 here since no maild serve runs yet: only its counts matter)
    if { maildctl health --json || true; } | "$PWD/.venv/bin/python" -c '
import json, sys
health = json.load(sys.stdin)
sys.exit(health["spool"]["waiting"] > 0 or health["outbox"]["queued"] > 0)'; then
      return 0
    fi
    sleep 0.2
  done
  echo "demo: the pipeline did not finish in time" >&2
  return 1
}
wait_for_pipeline

# The customer answers maild's auto-reply: In-Reply-To its Message-ID, the number in the subject.
reply=$(grep -l "^To: .*alice@example.org" "$demo"/data/outgoing/new/* | head -n 1)
mid=$(grep -m1 -i '^Message-ID:' "$reply" | cut -d' ' -f2)
subject=$(grep -m1 -i '^Subject:' "$reply" | cut -d' ' -f2-)
printf 'From: Alice Example <alice@example.org>\nTo: support@example.com\nSubject: Re: %s\nMessage-ID: <demo-reply-%s@example.org>\nIn-Reply-To: %s\n\nThanks!\n' \
  "$subject" "$(date +%s%N)" "$mid" | maild pipe
echo "piped a reply to the auto-reply: exit $?"
wait_for_pipeline

echo; maildctl ticket list
echo; maildctl spool list
echo; echo "auto-replies in $demo/data/outgoing/new: $(ls "$demo"/data/outgoing/new | wc -l)"
first=$(maildctl ticket list --json | "$PWD/.venv/bin/python" -c 'import json, sys; print(json.load(sys.stdin)[0]["number"])')
echo; echo "the customers' links to ticket $first (open one in a browser while maild serve runs):"
maildctl ticket links "$first"

# Then the daemon itself, on the embedded default: SMTP on 127.0.0.1:2525, outgoing mail to the Maildir,
# the customers' pages on http://127.0.0.1:8025.
# Send it a first mail from another shell:
#   swaks --server 127.0.0.1:2525 --to support@example.com --from you@example.org --header 'Subject: Hello'
# Stop it with Ctrl-C (it drains what is in flight).
echo; echo "starting maild serve (Ctrl-C stops it)"
exec maild serve
