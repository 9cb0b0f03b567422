#!/usr/bin/env bash
# Set up maild on the embedded default (SQLite, outgoing mail to a local Maildir) in ./demo-data and
# show the mail → ticket → auto-reply path: init, add a desk, pipe sample mails, list the tickets.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
mkdir -p demo-data
export MAILD_CONFIG="$PWD/demo-data/maild.toml"
[ -f "$MAILD_CONFIG" ] || echo "data_dir = \"$PWD/demo-data/data\"" > "$MAILD_CONFIG"

maildctl init
maildctl desk show support >/dev/null 2>&1 \
  || maildctl desk add support --address support@example.com --pattern 'SUP-{{yy}}-{{mm}}-{{nr-m}}'

for mail in docs/samples/*.eml; do
  code=0; maild pipe --recipient support@example.com < "$mail" || code=$?
  echo "piped $(basename "$mail"): exit $code"
done

# The customer answers maild's auto-reply: In-Reply-To its Message-ID, the number in the subject.
reply=$(grep -l "^To: .*alice@example.org" demo-data/data/outgoing/new/* | head -n 1)
mid=$(grep -m1 -i '^Message-ID:' "$reply" | cut -d' ' -f2)
subject=$(grep -m1 -i '^Subject:' "$reply" | cut -d' ' -f2-)
printf 'From: Alice Example <alice@example.org>\nTo: support@example.com\nSubject: Re: %s\nMessage-ID: <demo-reply-%s@example.org>\nIn-Reply-To: %s\n\nThanks!\n' \
  "$subject" "$(date +%s%N)" "$mid" | maild pipe
echo "piped a reply to the auto-reply: exit $?"

echo; maildctl ticket list
echo; maildctl spool list
echo; echo "auto-replies in demo-data/data/outgoing/new: $(ls demo-data/data/outgoing/new | wc -l)"

# Then the daemon itself, on the embedded default: SMTP on 127.0.0.1:2525, outgoing mail to the Maildir.
# Send it a first mail from another shell:
#   swaks --server 127.0.0.1:2525 --to support@example.com --from you@example.org --header 'Subject: Hello'
# Stop it with Ctrl-C (it drains what is in flight).
echo; echo "starting maild serve (Ctrl-C stops it)"
exec maild serve
