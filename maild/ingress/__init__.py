"""The process and the ways mail comes in: `maild serve` and its listeners, IMAP polling, the
MTA pipe, the control socket, the scheduler, the mbox importer, the `maild` command line."""
