# Suites for engine kernels: block formats against golden data made by the
# gguf Python package (tests/golden/gen_quant_fixtures.py), SIMD kernels and
# matrix products against the scalar references.
check_PROGRAMS += tests/test_quant tests/test_matmul
TESTS += tests/test_quant tests/test_matmul
tests_test_quant_SOURCES = tests/test_quant.c
tests_test_quant_CFLAGS = $(TEST_CFLAGS)
tests_test_quant_LDADD = libengine.a $(TEST_LIBS)
tests_test_matmul_SOURCES = tests/test_matmul.c tests/kernels_testutil.h
tests_test_matmul_CFLAGS = $(TEST_CFLAGS)
tests_test_matmul_LDADD = libengine.a $(TEST_LIBS)
EXTRA_DIST += tests/golden/gen_quant_fixtures.py tests/golden/quant
