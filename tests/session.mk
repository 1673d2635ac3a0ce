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
	tests/daemon_harness.h tests/test_ing_util.h tests/ops_util.h
tests_test_session_ops_CFLAGS = $(TEST_CFLAGS)
tests_test_session_ops_LDADD = $(TEST_LIBS)

# engramd's store lock (daemon/store.c): fair, and writes that wait for
# the map to grow tried again.
check_PROGRAMS += tests/test_store
TESTS += tests/test_store
tests_test_store_SOURCES = tests/test_store.c daemon/store.c daemon/paths.c \
	daemon/paths.h
tests_test_store_CFLAGS = $(TEST_CFLAGS) -I$(top_srcdir)/daemon
tests_test_store_LDADD = $(MEMSTORE_LIBS) $(TEST_LIBS)

# A session's KV in memstore (daemon/skv.c, compiled in with stubs for the
# daemon's store lock and log) against the in-memory cache, on the default
# model (ENGRAM_TEST_MODEL).
check_PROGRAMS += tests/test_skv
TESTS += tests/test_skv
tests_test_skv_SOURCES = tests/test_skv.c daemon/skv.c daemon/skv.h \
	tests/fixture_model.c tests/fixture_model.h tests/gguf_writer.c \
	tests/gguf_writer.h
tests_test_skv_CFLAGS = $(TEST_CFLAGS) -I$(top_srcdir)/daemon $(LMDB_CFLAGS) \
	$(SQLITE_CFLAGS) $(XXHASH_CFLAGS)
tests_test_skv_LDADD = $(MEMSTORE_LIBS) libengine.a $(TEST_LIBS) $(XXHASH_LIBS) $(LIBM)

# prefill, ask, session fork and block sharing through engramd and
# engramctl; needs ENGRAM_TEST_MODEL.
check_PROGRAMS += tests/test_ask_ops
TESTS += tests/test_ask_ops
tests_test_ask_ops_SOURCES = tests/test_ask_ops.c tests/daemon_harness.c \
	tests/daemon_harness.h tests/test_ing_util.h tests/ops_util.h
tests_test_ask_ops_CFLAGS = $(TEST_CFLAGS)
tests_test_ask_ops_LDADD = $(TEST_LIBS)
