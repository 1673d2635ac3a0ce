# memstore/: KV blocks in LMDB, the catalog in SQLite.
noinst_LIBRARIES += libmemstore.a
libmemstore_a_SOURCES = \
	%reldir%/memstore.h \
	%reldir%/errors.c
