# Suites for memstore/.
