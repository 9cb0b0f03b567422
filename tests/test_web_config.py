"""The `[web]` table: no listener unless `listen` is given, `public_url` required with it, one-line errors
naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from maild.config import ConfigError, ListenAddress, load_config


def config(tmp_path: Path, web: str) -> Path:
    path = tmp_path / "maild.toml"
    path.write_text(f'data_dir = "{tmp_path}/data"\n{web}')
    return path


def test_without_a_web_table_no_listener_and_no_links(tmp_path: Path) -> None:
    cfg = load_config(str(config(tmp_path, "")))

    assert cfg.web.listen is None
    assert cfg.web.public_url == ""


def test_listen_and_public_url(tmp_path: Path) -> None:
    web = '[web]\nlisten = "127.0.0.1:8025"\npublic_url = "https://help.example.com/"\n'

    cfg = load_config(str(config(tmp_path, web)))

    assert cfg.web.listen == ListenAddress("127.0.0.1", 8025)
    assert cfg.web.public_url == "https://help.example.com"  # no trailing slash: links add "/t/…"


def test_public_url_alone_makes_links_for_another_instance_to_serve(tmp_path: Path) -> None:
    cfg = load_config(str(config(tmp_path, '[web]\npublic_url = "https://help.example.com/support"\n')))

    assert cfg.web.listen is None
    assert cfg.web.public_url == "https://help.example.com/support"


def test_plain_http_to_a_loopback_host_is_allowed(tmp_path: Path) -> None:
    web = '[web]\nlisten = "[::1]:8025"\npublic_url = "http://127.0.0.1:8025"\n'

    cfg = load_config(str(config(tmp_path, web)))

    assert cfg.web.listen == ListenAddress("::1", 8025)
    assert cfg.web.public_url == "http://127.0.0.1:8025"


@pytest.mark.parametrize(
    ("web", "key", "words"),
    [
        ('listen = "127.0.0.1:8025"\n', "web.public_url", "missing"),
        ('listen = "8025"\npublic_url = "https://h.example"\n', "web.listen", "host:port"),
        ('listen = "127.0.0.1:0"\npublic_url = "https://h.example"\n', "web.listen", "host:port"),
        ("listen = 8025\n", "web.listen", "must be a str"),
        ('public_url = "help.example.com"\n', "web.public_url", "http(s) URL"),
        ('public_url = "ftp://help.example.com"\n', "web.public_url", "http(s) URL"),
        ('public_url = "http://help.example.com"\n', "web.public_url", "https://"),
        ('public_url = "https://help.example.com/?x=1"\n', "web.public_url", "no query"),
        ("port = 8025\n", "web.port", "unknown key"),
    ],
    ids=[
        "listen without public_url",
        "listen without host",
        "listen port 0",
        "listen a number",
        "public_url without scheme",
        "public_url ftp",
        "public_url plain http to another host",
        "public_url with a query",
        "unknown key",
    ],
)
def test_invalid_web_config_is_one_line_naming_the_key(
    tmp_path: Path, web: str, key: str, words: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(str(config(tmp_path, "[web]\n" + web)))

    message = str(caught.value)
    assert caught.value.key == key
    assert words in message
    assert "\n" not in message
