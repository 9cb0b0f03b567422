"""Default Jinja2 templates for outgoing mail. A desk overrides any of them by putting a file of the same
name in `<data_dir>/templates/<desk name>/`."""

from pathlib import Path

DEFAULT_DIR = Path(__file__).parent
