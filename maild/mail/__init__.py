"""Mail-format code: parsing, addresses, visible text, DSNs, reply tokens. Pure: no database, no I/O
beyond its arguments, and nothing else of maild is imported here."""
