# Suites for engine/.
