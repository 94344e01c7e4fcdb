"""imap: e-mail from a service mailbox over IMAP (live intake and backfill). See README.md."""
