"""The read side: the index set the server searches and the queries it answers (never imports lib/ingest)."""
