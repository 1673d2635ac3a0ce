# engine/: models, tokenizers, forward pass, kernels, sampling.
noinst_LIBRARIES += libengine.a
libengine_a_SOURCES = \
	%reldir%/engine.h \
	%reldir%/errors.c
