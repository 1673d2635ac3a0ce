# engine/: models, tokenizers, forward pass, kernels, sampling.
# The model and tokenizer files are listed here; the kernels keep their own
# list in engine/kernels.mk.
noinst_LIBRARIES += libengine.a
ENGINE_CORE_SOURCES = \
	%reldir%/engine.h \
	%reldir%/eng_internal.h \
	%reldir%/errors.c \
	%reldir%/gguf.c \
	%reldir%/model.c \
	%reldir%/tokenizer.c \
	%reldir%/unicode_data.c
ENGINE_KERNEL_SOURCES =
include engine/kernels.mk
ENGINE_FORWARD_SOURCES =
include engine/forward.mk
libengine_a_SOURCES = $(ENGINE_CORE_SOURCES) $(ENGINE_KERNEL_SOURCES) $(ENGINE_FORWARD_SOURCES)
libengine_a_CFLAGS = $(AM_CFLAGS) $(XXHASH_CFLAGS)
