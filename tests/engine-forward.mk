# Suites for the forward pass: tiny random GGUF models against a naive
# reference (tests/test_forward.c), and sampling (tests/test_sample.c).
FORWARD_TEST_CFLAGS = $(TEST_CFLAGS) $(XXHASH_CFLAGS)
FORWARD_TEST_LIBS = libengine.a $(TEST_LIBS) $(XXHASH_LIBS)

check_PROGRAMS += tests/test_forward tests/test_sample
TESTS += tests/test_forward tests/test_sample
tests_test_forward_SOURCES = tests/test_forward.c tests/fixture_model.c \
	tests/fixture_model.h tests/gguf_writer.c tests/gguf_writer.h
tests_test_forward_CFLAGS = $(FORWARD_TEST_CFLAGS)
tests_test_forward_LDADD = $(FORWARD_TEST_LIBS)
tests_test_sample_SOURCES = tests/test_sample.c
tests_test_sample_CFLAGS = $(FORWARD_TEST_CFLAGS)
tests_test_sample_LDADD = $(FORWARD_TEST_LIBS)

# The real default model (ENGRAM_TEST_MODEL, required): greedy tokens
# against llama.cpp's, prefill against one-token steps.
check_PROGRAMS += tests/test_forward_model
TESTS += tests/test_forward_model
tests_test_forward_model_SOURCES = tests/test_forward_model.c
tests_test_forward_model_CFLAGS = $(FORWARD_TEST_CFLAGS)
tests_test_forward_model_LDADD = $(FORWARD_TEST_LIBS)

# llama.cpp's logits and greedy continuations on the default model
# (tests/golden/forward/), within tolerances justified in the test.
check_PROGRAMS += tests/test_forward_golden
TESTS += tests/test_forward_golden
tests_test_forward_golden_SOURCES = tests/test_forward_golden.c
tests_test_forward_golden_CFLAGS = $(FORWARD_TEST_CFLAGS)
tests_test_forward_golden_LDADD = $(FORWARD_TEST_LIBS)
EXTRA_DIST += tests/golden/forward tests/golden/gen_forward_golden.py
