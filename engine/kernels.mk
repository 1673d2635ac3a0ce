# engine kernels: quantized formats, matrix products, thread pool.
# (%reldir% here is engine/, the directory of this fragment.)
ENGINE_KERNEL_SOURCES += \
	%reldir%/kernels.h \
	%reldir%/kernels_x86.h \
	%reldir%/quant.c \
	%reldir%/kernels_scalar.c \
	%reldir%/kernels_avx2.c \
	%reldir%/kernels_avx512.c \
	%reldir%/gemm_avx512.c \
	%reldir%/attn_avx512.c \
	%reldir%/matmul.c \
	%reldir%/pack.c \
	%reldir%/threadpool.c

# Micro-benchmark of the kernels (not run by make check; see
# bench/engine/README.md).
noinst_PROGRAMS += bench/engine/kernels
bench_engine_kernels_SOURCES = bench/engine/kernels.c
bench_engine_kernels_LDADD = libengine.a
