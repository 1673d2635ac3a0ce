# Suites for memstore/.
MS_TEST_CFLAGS = $(TEST_CFLAGS) -I$(top_srcdir)/bench/memstore $(LMDB_CFLAGS) $(SQLITE_CFLAGS) $(XXHASH_CFLAGS)
MS_TEST_LIBS = $(MEMSTORE_LIBS) $(TEST_LIBS)

check_PROGRAMS += tests/test_ms_codec
TESTS += tests/test_ms_codec
tests_test_ms_codec_SOURCES = tests/test_ms_codec.c
tests_test_ms_codec_CFLAGS = $(MS_TEST_CFLAGS)
tests_test_ms_codec_LDADD = $(MS_TEST_LIBS)

check_PROGRAMS += tests/test_ms_store
TESTS += tests/test_ms_store
tests_test_ms_store_SOURCES = tests/test_ms_store.c
tests_test_ms_store_CFLAGS = $(MS_TEST_CFLAGS)
tests_test_ms_store_LDADD = $(MS_TEST_LIBS)

check_PROGRAMS += tests/test_ms_catalog
TESTS += tests/test_ms_catalog
tests_test_ms_catalog_SOURCES = tests/test_ms_catalog.c
tests_test_ms_catalog_CFLAGS = $(MS_TEST_CFLAGS)
tests_test_ms_catalog_LDADD = $(MS_TEST_LIBS)

# Crash harness: SIGKILL at random moments, then recovery and ms_check.
check_PROGRAMS += tests/ms_crash
TESTS += tests/ms_crash
tests_ms_crash_SOURCES = tests/ms_crash.c
tests_ms_crash_CFLAGS = $(MS_TEST_CFLAGS)
tests_ms_crash_LDADD = $(MS_TEST_LIBS)

# Prefill-facing session calls: commit (blocks + tail in one transaction),
# truncate, fork.
check_PROGRAMS += tests/test_ms_session
TESTS += tests/test_ms_session
tests_test_ms_session_SOURCES = tests/test_ms_session.c
tests_test_ms_session_CFLAGS = $(MS_TEST_CFLAGS)
tests_test_ms_session_LDADD = $(MS_TEST_LIBS)
