"""Database models, migrations, the raw-mail spool and the attachment store."""
