# memstore/: KV blocks in LMDB, the catalog in SQLite.
noinst_LIBRARIES += libmemstore.a
libmemstore_a_SOURCES = \
	%reldir%/memstore.h \
	%reldir%/ms_internal.h \
	%reldir%/errors.c \
	%reldir%/codec.c \
	%reldir%/lmdb.c \
	%reldir%/summary.c \
	%reldir%/catalog.c \
	%reldir%/stream.c \
	%reldir%/store.c
libmemstore_a_CFLAGS = $(AM_CFLAGS) $(LMDB_CFLAGS) $(SQLITE_CFLAGS) \
	$(XXHASH_CFLAGS)
# What a program linking libmemstore.a needs after it.
MEMSTORE_LIBS = libmemstore.a $(LMDB_LIBS) $(SQLITE_LIBS) $(XXHASH_LIBS)

# bench/memstore: put/get throughput and bytes per token per mode and B.
# Run as in bench/memstore/README.md.
noinst_PROGRAMS += bench/memstore/ms_bench
bench_memstore_ms_bench_SOURCES = bench/memstore/ms_bench.c
bench_memstore_ms_bench_CFLAGS = $(AM_CFLAGS) $(LMDB_CFLAGS) $(SQLITE_CFLAGS)
bench_memstore_ms_bench_LDADD = $(MEMSTORE_LIBS)

# bench/memstore: effect of the f16/q8/q4 encodings on the model's logits
# and greedy continuations (golden prompts).  Run as in its README.
noinst_PROGRAMS += bench/memstore/kv_effect
bench_memstore_kv_effect_SOURCES = bench/memstore/kv_effect.c
bench_memstore_kv_effect_CFLAGS = $(AM_CFLAGS) $(LMDB_CFLAGS) \
	$(SQLITE_CFLAGS) $(JANSSON_CFLAGS)
bench_memstore_kv_effect_LDADD = $(MEMSTORE_LIBS) libengine.a \
	$(XXHASH_LIBS) $(JANSSON_LIBS) $(LIBM)
