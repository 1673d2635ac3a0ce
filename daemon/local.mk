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
	%reldir%/main.c
engramd_CFLAGS = $(AM_CFLAGS) $(LIBUV_CFLAGS) $(JANSSON_CFLAGS) $(XXHASH_CFLAGS)
engramd_LDADD = libengine.a \
	$(LIBUV_LIBS) $(JANSSON_LIBS) $(XXHASH_LIBS) $(LIBM)
