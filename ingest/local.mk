# ingest/: walking trees, extracting text, framing documents, source maps.
noinst_LIBRARIES += libingest.a
libingest_a_SOURCES = \
	%reldir%/ingest.h \
	%reldir%/errors.c
