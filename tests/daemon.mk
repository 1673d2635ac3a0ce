# Suites for daemon/ and client/.
check_PROGRAMS += tests/test_frame
TESTS += tests/test_frame
tests_test_frame_SOURCES = tests/test_frame.c daemon/frame.c daemon/frame.h
tests_test_frame_CFLAGS = $(TEST_CFLAGS)
tests_test_frame_LDADD = $(TEST_LIBS)
