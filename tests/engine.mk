# Suites for engine/: models and tokenizers here, kernels in engine-kernels.mk.
include tests/engine-kernels.mk
include tests/engine-forward.mk

ENGINE_TEST_CFLAGS = $(TEST_CFLAGS) $(XXHASH_CFLAGS) \
	-DENGRAM_TOP_SRCDIR='"$(abs_top_srcdir)"'
ENGINE_TEST_LIBS = libengine.a $(TEST_LIBS) $(XXHASH_LIBS)

# GGUF reader: good files of every shape, and a table of malformed ones.
check_PROGRAMS += tests/test_gguf
TESTS += tests/test_gguf
tests_test_gguf_SOURCES = tests/test_gguf.c tests/gguf_writer.c \
	tests/gguf_writer.h
tests_test_gguf_CFLAGS = $(ENGINE_TEST_CFLAGS)
tests_test_gguf_LDADD = $(ENGINE_TEST_LIBS)

# Tokenizers and model descriptions on tiny fixture vocabularies.
check_PROGRAMS += tests/test_tokenizer
TESTS += tests/test_tokenizer
tests_test_tokenizer_SOURCES = tests/test_tokenizer.c tests/gguf_writer.c \
	tests/gguf_writer.h
tests_test_tokenizer_CFLAGS = $(ENGINE_TEST_CFLAGS)
tests_test_tokenizer_LDADD = $(ENGINE_TEST_LIBS)

# llama.cpp's ids on the real model (ENGRAM_TEST_MODEL, required).
check_PROGRAMS += tests/test_golden_tokenizer
TESTS += tests/test_golden_tokenizer
tests_test_golden_tokenizer_SOURCES = tests/test_golden_tokenizer.c
tests_test_golden_tokenizer_CFLAGS = $(ENGINE_TEST_CFLAGS)
tests_test_golden_tokenizer_LDADD = $(ENGINE_TEST_LIBS)

EXTRA_DIST += tests/golden/tokenizer-gemma3.tsv \
	tests/golden/tokenizer-gemma3-special.tsv \
	tests/fuzz/fuzz_gguf.c tests/fuzz/corpus/gguf
