"""maild: an email-first helpdesk daemon."""

__version__ = "0.1.0"
