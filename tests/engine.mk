# Suites for engine/: models and tokenizers here, kernels in engine-kernels.mk.
include tests/engine-kernels.mk
