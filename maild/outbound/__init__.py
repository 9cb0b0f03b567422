"""Outgoing mail: templates, composing, screening recipients, the outbox sender, Maildir delivery."""
