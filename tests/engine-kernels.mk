# Suites for engine kernels.
