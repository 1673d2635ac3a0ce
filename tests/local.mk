# tests/: Check suites, one program per concern.  Each module's suites are
# listed in its own fragment so that modules grow without touching others.
TEST_CFLAGS = $(AM_CFLAGS) $(CHECK_CFLAGS) $(JANSSON_CFLAGS) $(LIBUV_CFLAGS)
TEST_LIBS = $(CHECK_LIBS) $(JANSSON_LIBS) $(LIBUV_LIBS)
# Integration tests find the programs under test here.
AM_TESTS_ENVIRONMENT = \
	ENGRAMD=$(abs_top_builddir)/engramd; export ENGRAMD; \
	ENGRAMCTL=$(abs_top_builddir)/engramctl; export ENGRAMCTL; \
	ENGRAM_SRCDIR=$(abs_top_srcdir); export ENGRAM_SRCDIR; \
	ENGRAM_BUILDDIR=$(abs_top_builddir); export ENGRAM_BUILDDIR; \
	CK_DEFAULT_TIMEOUT=120; export CK_DEFAULT_TIMEOUT;

include tests/daemon.mk
include tests/engine.mk
include tests/memstore.mk
include tests/ingest.mk
include tests/session.mk
