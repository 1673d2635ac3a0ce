# daemon/: engramd.
bin_PROGRAMS += engramd
engramd_SOURCES = \
	%reldir%/engramd.h \
	%reldir%/frame.h %reldir%/frame.c \
	%reldir%/proto.h %reldir%/proto.c \
	%reldir%/text.h %reldir%/text.c \
	%reldir%/paths.h %reldir%/paths.c \
	%reldir%/settings.c \
	%reldir%/log.c \
	%reldir%/server.c \
	%reldir%/ops.c \
	%reldir%/ops_model.c \
	%reldir%/ops_session.c \
	%reldir%/ops_generate.c \
	%reldir%/ops_ask.c \
	%reldir%/prefill.c \
	%reldir%/skv.h %reldir%/skv.c \
	%reldir%/store.c \
	%reldir%/jobs.c \
	%reldir%/warm.c \
	%reldir%/idle.c \
	%reldir%/main.c
engramd_CFLAGS = $(AM_CFLAGS) $(LIBUV_CFLAGS) $(JANSSON_CFLAGS) $(XXHASH_CFLAGS) \
	$(LMDB_CFLAGS) $(SQLITE_CFLAGS)
engramd_LDADD = libingest.a $(INGEST_LIBS) $(MEMSTORE_LIBS) libengine.a \
	$(LIBUV_LIBS) $(JANSSON_LIBS) $(XXHASH_LIBS) $(LIBM)
