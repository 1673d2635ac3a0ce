# Suites for daemon/ and client/.
check_PROGRAMS += tests/test_frame
TESTS += tests/test_frame
tests_test_frame_SOURCES = tests/test_frame.c daemon/frame.c daemon/frame.h
tests_test_frame_CFLAGS = $(TEST_CFLAGS)
tests_test_frame_LDADD = $(TEST_LIBS)

check_PROGRAMS += tests/test_proto
TESTS += tests/test_proto
tests_test_proto_SOURCES = tests/test_proto.c daemon/proto.c daemon/proto.h daemon/text.c daemon/text.h
tests_test_proto_CFLAGS = $(TEST_CFLAGS)
tests_test_proto_LDADD = $(TEST_LIBS)

check_PROGRAMS += tests/test_daemon
TESTS += tests/test_daemon
tests_test_daemon_SOURCES = tests/test_daemon.c tests/daemon_harness.c tests/daemon_harness.h
tests_test_daemon_CFLAGS = $(TEST_CFLAGS)
tests_test_daemon_LDADD = $(TEST_LIBS)

# Man pages lint clean (mandoc -Tlint).
TESTS += tests/man_lint.sh
EXTRA_DIST += tests/man_lint.sh

# The model through engramd (needs ENGRAM_TEST_MODEL, set by scripts/test).
check_PROGRAMS += tests/test_model_ops
TESTS += tests/test_model_ops
tests_test_model_ops_SOURCES = tests/test_model_ops.c tests/daemon_harness.c \
	tests/daemon_harness.h daemon/text.c daemon/text.h
tests_test_model_ops_CFLAGS = $(TEST_CFLAGS) $(XXHASH_CFLAGS)
tests_test_model_ops_LDADD = libengine.a $(TEST_LIBS) $(XXHASH_LIBS) $(LIBM)

# generate through engramd (needs ENGRAM_TEST_MODEL).
check_PROGRAMS += tests/test_generate_ops
TESTS += tests/test_generate_ops
tests_test_generate_ops_SOURCES = tests/test_generate_ops.c tests/daemon_harness.c \
	tests/daemon_harness.h
tests_test_generate_ops_CFLAGS = $(TEST_CFLAGS) $(XXHASH_CFLAGS)
tests_test_generate_ops_LDADD = libengine.a $(TEST_LIBS) $(XXHASH_LIBS) $(LIBM)
