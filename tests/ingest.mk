# Suites for ingest/.  Fixtures (PDFs, DOCX zips, the bad-input corpus) are
# made at test time in temporary folders by the suites themselves.
ING_TEST_CFLAGS = $(TEST_CFLAGS) $(LIBARCHIVE_CFLAGS) $(XXHASH_CFLAGS)
ING_TEST_LIBS = libingest.a $(INGEST_LIBS) $(TEST_LIBS)
ING_TESTS = tests/test_ing_ignore tests/test_ing_extract tests/test_ing_walk \
	tests/test_ing_srcmap tests/test_ing_job
check_PROGRAMS += $(ING_TESTS)
TESTS += $(ING_TESTS)
tests_test_ing_ignore_SOURCES = tests/test_ing_ignore.c tests/test_ing_util.h
tests_test_ing_ignore_CFLAGS = $(ING_TEST_CFLAGS)
tests_test_ing_ignore_LDADD = $(ING_TEST_LIBS)
tests_test_ing_extract_SOURCES = tests/test_ing_extract.c tests/test_ing_util.h
tests_test_ing_extract_CFLAGS = $(ING_TEST_CFLAGS)
tests_test_ing_extract_LDADD = $(ING_TEST_LIBS)
tests_test_ing_walk_SOURCES = tests/test_ing_walk.c tests/test_ing_util.h
tests_test_ing_walk_CFLAGS = $(ING_TEST_CFLAGS)
tests_test_ing_walk_LDADD = $(ING_TEST_LIBS)
tests_test_ing_srcmap_SOURCES = tests/test_ing_srcmap.c tests/test_ing_util.h
tests_test_ing_srcmap_CFLAGS = $(ING_TEST_CFLAGS)
tests_test_ing_srcmap_LDADD = $(ING_TEST_LIBS)
tests_test_ing_job_SOURCES = tests/test_ing_job.c tests/test_ing_util.h
tests_test_ing_job_CFLAGS = $(ING_TEST_CFLAGS)
tests_test_ing_job_LDADD = $(ING_TEST_LIBS)
# libFuzzer targets: built by hand with clang (see each file's header).
EXTRA_DIST += tests/fuzz/fuzz_ing_html.c tests/fuzz/fuzz_ing_docx.c \
	tests/fuzz/fuzz_ing_pdf.c tests/fuzz/fuzz_ing_eml.c \
	tests/fuzz/fuzz_ing_gitignore.c
