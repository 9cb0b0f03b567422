"""`maildctl`, the admin's command-line tool."""
