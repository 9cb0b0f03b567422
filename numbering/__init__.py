"""Ticket numbers: patterns (numbering.pattern) and atomic allocation (numbering.allocate)."""
