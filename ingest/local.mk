# ingest/: walking trees, extracting text, framing documents, source maps.
noinst_LIBRARIES += libingest.a
libingest_a_SOURCES = \
	%reldir%/ingest.h \
	%reldir%/ing_internal.h \
	%reldir%/errors.c \
	%reldir%/settings.c \
	%reldir%/buf.c \
	%reldir%/ignore.c \
	%reldir%/walk.c \
	%reldir%/extract.c \
	%reldir%/extract_text.c \
	%reldir%/extract_html.c \
	%reldir%/extract_docx.c \
	%reldir%/extract_pdf.c \
	%reldir%/extract_eml.c \
	%reldir%/frame.c \
	%reldir%/srcmap.c \
	%reldir%/manifest.c \
	%reldir%/job.c
libingest_a_CFLAGS = $(AM_CFLAGS) $(LIBXML2_CFLAGS) $(LIBARCHIVE_CFLAGS) \
	$(POPPLER_CFLAGS) $(XXHASH_CFLAGS)
# What a program linking libingest.a needs after it.
INGEST_LIBS = $(LIBXML2_LIBS) $(LIBARCHIVE_LIBS) $(POPPLER_LIBS) $(XXHASH_LIBS)
