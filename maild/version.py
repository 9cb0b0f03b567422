"""The installed maild's version: `maild --version`, `maildctl --version`, the daemon's status answer."""

from __future__ import annotations


def package_version() -> str:
    """Looked up only when asked: importlib.metadata would cost every `maild pipe` its start-up time."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("maild")
    except PackageNotFoundError:  # run from a checkout that was never installed
        from maild import __version__

        return __version__
