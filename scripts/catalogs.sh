#!/usr/bin/env bash
# The customers' languages' catalogs (maild/locale): extract the strings of the Python code and the default
# templates (babel.cfg) into maild.pot, merge them into each language's maild.po (new strings come in
# untranslated: translate them, tests/test_languages.py fails until every one is), and compile the .mo
# files maild reads. Both .po and .mo are in git, so a clone and an installed wheel need no build step.
#   scripts/catalogs.sh            extract, update, compile
#   scripts/catalogs.sh compile    compile only (after editing a .po)
set -euo pipefail
cd "$(dirname "$0")/.."
pybabel=.venv/bin/pybabel
locale=maild/locale
languages="de pl hu pt"
if [ "${1:-}" != compile ]; then
  "$pybabel" -q extract -F babel.cfg --no-location --sort-output --no-wrap \
    --project=maild --copyright-holder=maild -o "$locale/maild.pot" .
  for lang in $languages; do
    po="$locale/$lang/LC_MESSAGES/maild.po"
    if [ -f "$po" ]; then
      "$pybabel" -q update --no-fuzzy-matching --no-wrap --ignore-obsolete --init-missing -D maild -i "$locale/maild.pot" -l "$lang" -o "$po"
    else
      "$pybabel" -q init -D maild -i "$locale/maild.pot" -l "$lang" -o "$po"
    fi
  done
fi
for lang in $languages; do
  "$pybabel" compile --statistics -D maild -l "$lang" -i "$locale/$lang/LC_MESSAGES/maild.po" \
    -o "$locale/$lang/LC_MESSAGES/maild.mo"
done
