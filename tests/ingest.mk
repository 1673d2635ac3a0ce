# Suites for ingest/.
