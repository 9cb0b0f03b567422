"""The argument parser of `maild` and `maildctl`: a usage mistake is one line saying what is wrong and
where the help is (argparse prints the whole usage block first), exit 2 as argparse does."""

from __future__ import annotations

import argparse
from typing import NoReturn


class OneLineErrorParser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message}: see '{self.prog} --help'\n")
