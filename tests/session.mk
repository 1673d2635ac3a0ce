# Suites for ingest jobs, sessions and the store through engramd, and the
# memstore's token stream.
check_PROGRAMS += tests/test_ms_stream
TESTS += tests/test_ms_stream
tests_test_ms_stream_SOURCES = tests/test_ms_stream.c
tests_test_ms_stream_CFLAGS = $(MS_TEST_CFLAGS)
tests_test_ms_stream_LDADD = $(MS_TEST_LIBS)

# Needs ENGRAM_TEST_MODEL (set by scripts/test).
check_PROGRAMS += tests/test_session_ops
TESTS += tests/test_session_ops
tests_test_session_ops_SOURCES = tests/test_session_ops.c tests/daemon_harness.c \
	tests/daemon_harness.h tests/test_ing_util.h
tests_test_session_ops_CFLAGS = $(TEST_CFLAGS)
tests_test_session_ops_LDADD = $(TEST_LIBS)
