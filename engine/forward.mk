# engine forward pass: transformer, KV cache interface, sampling, chat templates.
# (%reldir% here is engine/, the directory of this fragment.)
ENGINE_FORWARD_SOURCES += \
	%reldir%/forward.c \
	%reldir%/fwd_internal.h \
	%reldir%/attention.c \
	%reldir%/kv.c \
	%reldir%/sparse.c \
	%reldir%/sample.c \
	%reldir%/chat.c \
	%reldir%/generate.c

# Whole-model prefill and decode speed (not run by make check; see
# bench/engine/README.md).
noinst_PROGRAMS += bench/engine/prefill_decode
bench_engine_prefill_decode_SOURCES = bench/engine/prefill_decode.c
bench_engine_prefill_decode_LDADD = libengine.a $(XXHASH_LIBS)

# Passkey recall, dense and block-sparse (not run by make check; see
# bench/needle/README.md).
noinst_PROGRAMS += bench/needle/needle
bench_needle_needle_SOURCES = bench/needle/needle.c bench/bench_flags.h
bench_needle_needle_LDADD = libengine.a $(XXHASH_LIBS) $(LIBM)

# Decode cost against context length on a synthetic in-memory cache (not
# run by make check; see bench/longctx/README.md).
noinst_PROGRAMS += bench/longctx/decode_cost
bench_longctx_decode_cost_SOURCES = bench/longctx/decode_cost.c \
	bench/bench_flags.h
bench_longctx_decode_cost_LDADD = libengine.a $(XXHASH_LIBS) $(LIBM)
