"""The customers' language (issue 18): a desk's `--language` makes its default customer mail, its web pages,
status and priority names and dates speak that language through the gettext catalogs in maild/locale; a
desk's own template still wins (and may use `_()` too); agents' notices stay English; the catalogs are
complete, compiled and current."""

from __future__ import annotations

import datetime as dt
import urllib.request
from collections.abc import Callable
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po

from maild.config import Config, load_config
from maild.outbound.language import LANGUAGES, LOCALE_DIR, format_when, priority_word, status_word
from maild.outbound.template_variables import sample_variables
from maild.outbound.templating import render
from maild.storage.models import Desk
from tests.cli import ctl, ok
from tests.daemon import EX_OK, Factory, Serve, free_port, start_fixture, write_config  # noqa: F401
from tests.pipeline.helpers import SUPPORT, deliver, mail, make_agent, make_desk, outbox, tickets

ROOT = Path(__file__).resolve().parent.parent
TRANSLATED = [language for language in LANGUAGES if language != "en"]
BOB = "bob.agent@example.com"


def _catalog_keys(messages: object) -> set[tuple[str | None, object]]:
    return {(m.context, m.id) for m in messages if m.id}  # type: ignore[attr-defined]


def _extracted() -> set[tuple[str | None, object]]:
    """The strings of the code and the default templates now, read as scripts/catalogs.sh reads them."""
    with (ROOT / "babel.cfg").open() as file:
        method_map, options_map = parse_mapping_cfg(file)
    found: set[tuple[str | None, object]] = set()
    for _file, _line, message, _comments, context in extract_from_dir(str(ROOT), method_map, options_map):
        found.add((context, message))
    return found


def test_every_catalog_is_complete_compiled_and_current() -> None:
    extracted = _extracted()
    for language in TRANSLATED:
        directory = LOCALE_DIR / language / "LC_MESSAGES"
        with (directory / "maild.po").open("rb") as file:
            po = read_po(file, locale=language)
        with (directory / "maild.mo").open("rb") as file:
            mo = read_mo(file)
        untranslated = [m.id for m in po if m.id and (m.fuzzy or not all(_strings(m.string)))]
        assert untranslated == [], f"{language}: translate these, then scripts/catalogs.sh compile"
        problems = [(m.id, errors) for m, errors in po.check()]
        assert problems == [], f"{language}: placeholders that do not match their msgid"
        compiled = {(m.context, _strings(m.id)): _strings(m.string) for m in mo if m.id}
        written = {(m.context, _strings(m.id)): _strings(m.string) for m in po if m.id}
        assert compiled == written, f"{language}: maild.mo is stale: run scripts/catalogs.sh compile"
        missing = extracted - _catalog_keys(po)
        assert not missing, f"{language}: strings not in the catalog (run scripts/catalogs.sh): {missing}"


def _strings(string: object) -> tuple[str, ...]:
    return tuple(string) if isinstance(string, tuple | list) else (str(string),)


def test_an_unknown_language_is_refused(session_factory: Factory, config_file: Path) -> None:
    make_desk(session_factory, "support", [SUPPORT], "SUP-{{nr}}")

    refused = ctl(config_file, "desk", "set", "support", "--language", "fr")

    assert refused.returncode != 0 and "Traceback" not in refused.stderr
    assert "language" in refused.stderr and "pl" in refused.stderr  # what to use instead
    with session_factory() as s:
        assert s.query(Desk).one().language == "en"


def test_a_polish_desk_auto_replies_in_polish_and_tells_its_agents_in_english(
    session_factory: Factory, cfg: Config, config_file: Path
) -> None:
    make_desk(session_factory, "support", [SUPPORT], "SUP-{{nr}}")
    make_agent(session_factory, BOB, "Bob Builder", ["support"])
    ok(ctl(config_file, "desk", "set", "support", "--language", "pl"))
    preview = ok(ctl(config_file, "template", "preview", "support", "ticket_created"))
    assert "Dzień dobry Carol Customer," in preview  # maildctl shows what the customer will read

    deliver(session_factory, cfg, mail(subject="Drukarka nie działa"))

    with session_factory() as s:
        [reply] = outbox(s)
        notices = [row for row in outbox(s, agents=True) if row.template == "new_ticket_notice"]
        raw, number = reply.raw, tickets(s)[0].number
    auto = message_from_bytes(raw, policy=policy.default)
    assert isinstance(auto, EmailMessage)
    assert auto["Subject"] == f"[{number}] Drukarka nie działa"  # the number and customer words unchanged
    text = auto.get_body(("plain",))
    html = auto.get_body(("html",))
    assert text is not None and html is not None
    assert text.get_content().startswith("Dzień dobry Alice Example,\n\nDziękujemy za wiadomość")
    assert f"zostawiając [{number}] w temacie" in text.get_content()
    assert f"<strong>{number}</strong>: „Drukarka nie działa”" in html.get_content()
    assert notices and b"Dzie" not in notices[0].raw  # agents' notices stay English


@pytest.mark.parametrize(
    ("language", "subject", "words"),
    [
        ("de", "[SUP-26-03-1] Geschlossen: Printer on fire", "wir haben seit 14 Tagen nichts von Ihnen"),
        ("hu", "[SUP-26-03-1] Lezárva: Printer on fire", "14 nap ideje nem kaptunk Öntől"),
        ("pt", "[SUP-26-03-1] Encerrado: Printer on fire", "Não temos notícias suas sobre o ticket"),
        ("pl", "[SUP-26-03-1] Zamknięte: Printer on fire", "Od 14 dni nie otrzymaliśmy od Ciebie"),
        ("en", "[SUP-26-03-1] Closed: Printer on fire", "we have not heard from you on ticket SUP-26-03-1"),
    ],
)
def test_each_language_closes_a_ticket_in_its_words(
    tmp_path: Path, language: str, subject: str, words: str
) -> None:
    rendered = render(tmp_path, "support", "auto_close", sample_variables("auto_close"), language)

    assert rendered.subject == subject
    assert words in rendered.text and rendered.html is not None and words.split()[-1] in rendered.html


def test_refused_attachments_are_explained_in_the_desks_language(tmp_path: Path) -> None:
    rendered = render(tmp_path, "support", "ticket_created", sample_variables("ticket_created"), "de")

    assert "Diese Anhänge Ihrer E-Mail konnten wir nicht annehmen:" in rendered.text
    assert "- backup.zip: 30,2 MB groß – mehr als die 25 MB, die wir annehmen" in rendered.text
    assert "- setup.exe: wir nehmen keine Programme oder Skripte an" in rendered.text


def test_a_desks_own_template_still_wins_and_may_use_gettext(tmp_path: Path) -> None:
    own = tmp_path / "support"
    own.mkdir()
    (own / "ticket_created.txt.j2").write_text(
        '{{ _("Hello %(customer_name)s,", customer_name=customer_name) }} {{ status_word("open") }}\n'
        "Nasz własny tekst.\n"
    )

    rendered = render(tmp_path, "support", "ticket_created", sample_variables("ticket_created"), "pl")

    assert rendered.text == "Dzień dobry Carol Customer, Otwarty\nNasz własny tekst.\n"
    assert rendered.html is None  # the desk's text part alone, never the package's (Polish) HTML
    other = render(tmp_path, "sales", "ticket_created", sample_variables("ticket_created"), "pl")
    assert "Dziękujemy za wiadomość" in other.text  # another desk: the package default


def test_statuses_priorities_and_dates_in_each_language() -> None:
    at = dt.datetime(2026, 3, 7, 9, 5, tzinfo=dt.UTC).astimezone(dt.timezone(dt.timedelta(hours=1), "CET"))
    polish = [status_word(name, "pl") for name in ("open", "in_progress", "waiting", "resolved", "closed")]
    assert polish == ["Otwarty", "W trakcie", "Oczekuje", "Rozwiązany", "Zamknięty"]  # as Sugester's
    assert status_word("awaiting_parts", "pl") == "Awaiting parts"  # a custom status: its name
    assert status_word("waiting", "de") == "Wartet auf Ihre Antwort"
    assert priority_word("urgent", "hu") == "Sürgős"
    assert status_word("resolved", "pt") == "Resolvido"
    assert format_when(at, "de") == "7. März 2026, 10:05 CET"
    assert format_when(at, "hu") == "2026. március 7. 10:05 CET"
    assert format_when(at, "pt") == "7 de março de 2026 10:05 CET"
    assert format_when(at, "pl") == "7 marca 2026, 10:05 CET"


# --- the web page ------------------------------------------------------------------------------------


@pytest.fixture
def web_config(tmp_path: Path, data_dir: Path, database_url: str) -> tuple[Path, int]:
    port = free_port()
    web = f'[web]\nlisten = "127.0.0.1:{port}"\npublic_url = "http://127.0.0.1:{port}"\n'
    listen = {"smtp": f"127.0.0.1:{free_port()}"}
    return write_config(tmp_path / "serve.toml", data_dir, database_url, listen=listen, extra=web), port


def page(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return str(response.read().decode())


def test_the_ticket_page_speaks_polish(
    web_config: tuple[Path, int], session_factory: Factory, start: Callable[[Path], Serve]
) -> None:
    config, port = web_config
    cfg = load_config(str(config))
    make_desk(session_factory, "support", [SUPPORT], "SUP-{{nr}}", timezone="Europe/Warsaw")
    make_agent(session_factory, BOB, "Bob Builder", ["support"])
    ok(ctl(config, "desk", "set", "support", "--language", "pl"))
    deliver(session_factory, cfg, mail(subject="Drukarka nie działa"))
    with session_factory() as s:
        number = tickets(s)[0].number
    [row] = [line for line in ok(ctl(config, "ticket", "links", number)).splitlines() if "/t/" in line]
    url = row[row.index("http") :].split()[0]
    serve = start(config)

    opened = page(url)
    ok(ctl(config, "ticket", "reply", number, "--as", BOB, stdin=b"Prosze zrestartowac drukarke.\n"))
    waiting = page(url)

    assert '<html lang="pl">' in opened and "<dt>Priorytet</dt><dd>Normalny</dd>" in opened
    assert '<dd class="status">Otwarty</dd>' in opened and '<dd class="status">Oczekuje</dd>' in waiting
    assert "7 marca 2026, 10:30 CET" in opened  # the desk's zone, the Polish way
    assert ">Ty</span>" in opened and "<h2>Wiadomości</h2>" in opened
    not_found = urllib.request.Request(f"http://127.0.0.1:{port}/t/nothing")
    with pytest.raises(urllib.error.HTTPError) as missing:
        urllib.request.urlopen(not_found, timeout=10)
    assert b"Not found" in missing.value.read()  # no desk, no language: English
    assert serve.stop() == EX_OK
