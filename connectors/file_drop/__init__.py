"""file_drop: JSON Lines and CSV exports dropped in a folder (forms, questionnaires,
historical complaint exports); how a site backfills history. See README.md."""
