"""Remote catalogues papers are added from; each yields Paper records into the same ingest as the readers."""
