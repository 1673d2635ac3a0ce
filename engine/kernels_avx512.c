/* kernels_avx512.c - AVX-512 (F, BW, VL, DQ, VNNI) dot products.  Integer
 * kernels are the 256-bit ones of kernels_x86.h with VPDPBUSD in place of
 * the VPMADDUBSW/VPMADDWD pair; float kernels use 512-bit FMA with masked
 * tails.  Compiled for that target, reached only after a CPU check. */
#include "config.h"
#include <stdint.h>
#include <string.h>
#include "kernels.h"

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define ENG_HAVE_X86 1
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c")
#include <immintrin.h>

#define KX(name) avx512_##name
#define ENG_X86_VNNI 1
#include "kernels_x86.h"

/* kind: 0 f32, 1 f16, 2 bf16 (the top half of an f32). */
static inline __attribute__((always_inline)) __m512
load16(const void *w, int64_t i, int kind, __mmask16 m)
{
	if (kind == 1)
		return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m,
			(const uint16_t *)w + i));
	if (kind == 2)
		return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(
			_mm256_maskz_loadu_epi16(m, (const uint16_t *)w + i)), 16));
	return _mm512_maskz_loadu_ps(m, (const float *)w + i);
}

static inline __attribute__((always_inline)) void
fdot_nt(int64_t n, const void *w, const void *a, size_t as, float *s,
	size_t ss, int NT, int kind)
{
	__m512 acc0[ENG_NT_MAX], acc1[ENG_NT_MAX];
	ENG__UNROLL
	for (int t = 0; t < NT; t++)
		acc0[t] = acc1[t] = _mm512_setzero_ps();
#define Y(t) ((const float *)(const void *)((const char *)a + (size_t)(t) * as))
	int64_t i = 0;
	for (; i + 32 <= n; i += 32) {
		__m512 w0 = load16(w, i, kind, 0xffff);
		__m512 w1 = load16(w, i + 16, kind, 0xffff);
		ENG__UNROLL
		for (int t = 0; t < NT; t++) {
			acc0[t] = _mm512_fmadd_ps(w0, _mm512_loadu_ps(Y(t) + i), acc0[t]);
			acc1[t] = _mm512_fmadd_ps(w1, _mm512_loadu_ps(Y(t) + i + 16), acc1[t]);
		}
	}
	for (; i < n; i += 16) {
		__mmask16 m = n - i >= 16 ? 0xffff
			: (__mmask16)((1u << (n - i)) - 1);
		__m512 w0 = load16(w, i, kind, m);
		ENG__UNROLL
		for (int t = 0; t < NT; t++)
			acc0[t] = _mm512_fmadd_ps(w0,
				_mm512_maskz_loadu_ps(m, Y(t) + i), acc0[t]);
	}
#undef Y
	ENG__UNROLL
	for (int t = 0; t < NT; t++)
		s[(size_t)t * ss] = _mm512_reduce_add_ps(
			_mm512_add_ps(acc0[t], acc1[t]));
}

#define ENG__C_F32(N) fdot_nt(n, w, a, as, s, ss, N, 0)
#define ENG__C_F16(N) fdot_nt(n, w, a, as, s, ss, N, 1)
#define ENG__C_BF16(N) fdot_nt(n, w, a, as, s, ss, N, 2)
ENG__X86_ENTRY(vec_dot_f32, ENG__C_F32)
ENG__X86_ENTRY(vec_dot_f16, ENG__C_F16)
ENG__X86_ENTRY(vec_dot_bf16, ENG__C_BF16)

static void avx512_tile_q8_0(int64_t n, const void *w, size_t ws,
			     const void *a, size_t as, float *s, size_t ss)
{
	avx512_tile_s32(n, w, ws, a, as, s, ss, ENG_TYPE_Q8_0, sizeof(eng_block_q8_0));
}

static void avx512_tile_q5_0(int64_t n, const void *w, size_t ws,
			     const void *a, size_t as, float *s, size_t ss)
{
	avx512_tile_s32(n, w, ws, a, as, s, ss, ENG_TYPE_Q5_0, sizeof(eng_block_q5_0));
}

static void avx512_tile_q4_0(int64_t n, const void *w, size_t ws,
			     const void *a, size_t as, float *s, size_t ss)
{
	avx512_tile_s32(n, w, ws, a, as, s, ss, ENG_TYPE_Q4_0, sizeof(eng_block_q4_0));
}

#pragma GCC pop_options
#endif

eng_tile_fn eng__tile_avx512(eng_type t)
{
#ifdef ENG_HAVE_X86
	switch (t) {
	case ENG_TYPE_Q8_0: return avx512_tile_q8_0;
	case ENG_TYPE_Q5_0: return avx512_tile_q5_0;
	case ENG_TYPE_Q4_0: return avx512_tile_q4_0;
	default:            return NULL;
	}
#else
	(void)t;
	return NULL;
#endif
}

eng_vec_dot_fn eng__vec_dot_avx512(eng_type t)
{
#ifdef ENG_HAVE_X86
	switch (t) {
	case ENG_TYPE_F32:  return avx512_vec_dot_f32;
	case ENG_TYPE_F16:  return avx512_vec_dot_f16;
	case ENG_TYPE_BF16: return avx512_vec_dot_bf16;
	case ENG_TYPE_Q4_0: return avx512_vec_dot_q4_0;
	case ENG_TYPE_Q4_1: return avx512_vec_dot_q4_1;
	case ENG_TYPE_Q5_0: return avx512_vec_dot_q5_0;
	case ENG_TYPE_Q5_1: return avx512_vec_dot_q5_1;
	case ENG_TYPE_Q8_0: return avx512_vec_dot_q8_0;
	case ENG_TYPE_Q2_K: return avx512_vec_dot_q2_K;
	case ENG_TYPE_Q3_K: return avx512_vec_dot_q3_K;
	case ENG_TYPE_Q4_K: return avx512_vec_dot_q4_K;
	case ENG_TYPE_Q5_K: return avx512_vec_dot_q5_K;
	case ENG_TYPE_Q6_K: return avx512_vec_dot_q6_K;
	default:            return NULL;
	}
#else
	(void)t;
	return NULL;
#endif
}

eng_repack_fn eng__repack_q8_0_avx512(eng_type t)
{
#ifdef ENG_HAVE_X86
	switch (t) {
	case ENG_TYPE_Q4_0: return avx512_repack_q4_0;
	case ENG_TYPE_Q5_0: return avx512_repack_q5_0;
	default:            return NULL;
	}
#else
	(void)t;
	return NULL;
#endif
}
