"""Real mail servers for tests, each a private instance on loopback (e.g. `tests.servers.dovecot`)."""
