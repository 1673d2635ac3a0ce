/* kernels_avx2.c - AVX2 + FMA + F16C dot products.  The whole file is
 * compiled for that target (pragma below) and only reached through
 * eng_vec_dot_get after a CPU check, so the library still runs elsewhere.
 * Integer kernels are shared with AVX-512 in kernels_x86.h. */
#include "config.h"
#include <stdint.h>
#include <string.h>
#include "kernels.h"

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define ENG_HAVE_X86 1
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")
#include <immintrin.h>

#define KX(name) avx2_##name
#define ENG_X86_VNNI 0
#include "kernels_x86.h"

/* Float weights (f32, f16, bf16: kind 0, 1, 2) times f32 activations: two
 * 8-wide chains per token hide the FMA latency; the tail below 8 is
 * scalar. */
static inline __attribute__((always_inline)) __m256
load8(const void *w, int64_t i, int kind)
{
	if (kind == 1)
		return _mm256_cvtph_ps(_mm_loadu_si128(
			(const __m128i *)(const void *)((const uint16_t *)w + i)));
	if (kind == 2)	/* bfloat16 is the top half of an f32 */
		return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(
			_mm_loadu_si128((const __m128i *)(const void *)((const uint16_t *)w + i))), 16));
	return _mm256_loadu_ps((const float *)w + i);
}

static inline __attribute__((always_inline)) void
fdot_nt(int64_t n, const void *w, const void *a, size_t as, float *s,
	size_t ss, int NT, int kind)
{
	__m256 acc0[ENG_NT_MAX], acc1[ENG_NT_MAX];
	float tail[ENG_NT_MAX];
	ENG__UNROLL
	for (int t = 0; t < NT; t++) {
		acc0[t] = acc1[t] = _mm256_setzero_ps();
		tail[t] = 0;
	}
#define Y(t) ((const float *)(const void *)((const char *)a + (size_t)(t) * as))
	int64_t i = 0;
	for (; i + 16 <= n; i += 16) {
		__m256 w0 = load8(w, i, kind), w1 = load8(w, i + 8, kind);
		ENG__UNROLL
		for (int t = 0; t < NT; t++) {
			acc0[t] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(Y(t) + i), acc0[t]);
			acc1[t] = _mm256_fmadd_ps(w1, _mm256_loadu_ps(Y(t) + i + 8), acc1[t]);
		}
	}
	for (; i + 8 <= n; i += 8) {
		__m256 w0 = load8(w, i, kind);
		ENG__UNROLL
		for (int t = 0; t < NT; t++)
			acc0[t] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(Y(t) + i), acc0[t]);
	}
	for (; i < n; i++) {
		float wi = kind == 1 ? _cvtsh_ss(((const uint16_t *)w)[i])
			 : kind == 2 ? eng_bf16_to_f32(((const uint16_t *)w)[i])
				     : ((const float *)w)[i];
		ENG__UNROLL
		for (int t = 0; t < NT; t++)
			tail[t] += wi * Y(t)[i];
	}
#undef Y
	ENG__UNROLL
	for (int t = 0; t < NT; t++)
		s[(size_t)t * ss] = avx2_hsum(_mm256_add_ps(acc0[t], acc1[t])) + tail[t];
}

#define ENG__C_F32(N) fdot_nt(n, w, a, as, s, ss, N, 0)
#define ENG__C_F16(N) fdot_nt(n, w, a, as, s, ss, N, 1)
#define ENG__C_BF16(N) fdot_nt(n, w, a, as, s, ss, N, 2)
ENG__X86_ENTRY(vec_dot_f32, ENG__C_F32)
ENG__X86_ENTRY(vec_dot_f16, ENG__C_F16)
ENG__X86_ENTRY(vec_dot_bf16, ENG__C_BF16)

/* ---- activation quantizers: bit-identical to the references ---------- */

static inline __attribute__((always_inline)) float amax_n(const float *x, int n)
{
	const __m256 nosign = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
	__m256 m = _mm256_setzero_ps();
	for (int i = 0; i < n; i += 8)
		m = _mm256_max_ps(m, _mm256_and_ps(_mm256_loadu_ps(x + i), nosign));
	__m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
	h = _mm_max_ps(h, _mm_movehl_ps(h, h));
	h = _mm_max_ss(h, _mm_movehdup_ps(h));
	return _mm_cvtss_f32(h);
}

/* 32 int32 in four vectors to 32 int8, in order. */
static inline __attribute__((always_inline)) __m256i pack32(__m256i a, __m256i b,
							    __m256i c, __m256i d)
{
	__m256i ab = _mm256_packs_epi32(a, b), cd = _mm256_packs_epi32(c, d);
	__m256i r = _mm256_packs_epi16(ab, cd);
	/* the packs interleave 128-bit lanes: 0 4 1 5 2 6 3 7 -> 0..7 */
	return _mm256_permutevar8x32_epi32(r, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

static void quantize_q8_0(const float *x, void *y, int64_t n)
{
	eng_block_q8_0 *b = y;
	for (int64_t i = 0; i < n / 32; i++, x += 32) {
		float amax = amax_n(x, 32);
		float d = amax / 127.0f, id = amax != 0.0f ? 127.0f / amax : 0.0f;
		__m256 m = _mm256_set1_ps(id);
		__m256i q[4];
		ENG__UNROLL
		for (int k = 0; k < 4; k++)	/* half to even, as the reference */
			q[k] = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(_mm256_loadu_ps(x + 8 * k), m),
						  _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
		b[i].d = eng_f32_to_f16(d);
		_mm256_storeu_si256((__m256i *)(void *)b[i].qs, pack32(q[0], q[1], q[2], q[3]));
	}
}

static void quantize_q8_K(const float *x, void *y, int64_t n)
{
	eng_block_q8_K *b = y;
	for (int64_t i = 0; i < n / 256; i++, x += 256) {
		float amax = amax_n(x, 256);
		float id = amax ? 127.0f / amax : 0.0f;
		/* 1 / (127 / amax), not amax / 127: llama.cpp's reference
		 * (the one its x86 build uses for Q8_K) stores 1/iscale, and
		 * the two differ in the last bit for some amax. */
		b[i].d = amax ? 1.0f / id : 0.0f;
		const __m256 m = _mm256_set1_ps(id);
		const __m256 hi = _mm256_set1_ps(127.0f), lo = _mm256_set1_ps(-127.0f);
		ENG__UNROLL
		for (int k = 0; k < 8; k++) {
			__m256i q[4];
			ENG__UNROLL
			for (int j = 0; j < 4; j++) {
				__m256 v = _mm256_mul_ps(_mm256_loadu_ps(x + 32 * k + 8 * j), m);
				v = _mm256_min_ps(hi, _mm256_max_ps(lo, v));
				q[j] = _mm256_cvtps_epi32(v);	/* nearest even, as lrintf */
			}
			_mm256_storeu_si256((__m256i *)(void *)(b[i].qs + 32 * k),
					    pack32(q[0], q[1], q[2], q[3]));
			ENG__UNROLL
			for (int g = 0; g < 2; g++) {
				__m256i s = _mm256_add_epi32(q[2 * g], q[2 * g + 1]);
				__m128i h = _mm_add_epi32(_mm256_castsi256_si128(s),
							  _mm256_extracti128_si256(s, 1));
				h = _mm_add_epi32(h, _mm_shuffle_epi32(h, 0x4e));
				h = _mm_add_epi32(h, _mm_shuffle_epi32(h, 0xb1));
				b[i].bsums[2 * k + g] = (int16_t)_mm_cvtsi128_si32(h);
			}
		}
	}
}

#pragma GCC pop_options
#endif

eng_vec_dot_fn eng__vec_dot_avx2(eng_type t)
{
#ifdef ENG_HAVE_X86
	switch (t) {
	case ENG_TYPE_F32:  return avx2_vec_dot_f32;
	case ENG_TYPE_F16:  return avx2_vec_dot_f16;
	case ENG_TYPE_BF16: return avx2_vec_dot_bf16;
	case ENG_TYPE_Q4_0: return avx2_vec_dot_q4_0;
	case ENG_TYPE_Q4_1: return avx2_vec_dot_q4_1;
	case ENG_TYPE_Q5_0: return avx2_vec_dot_q5_0;
	case ENG_TYPE_Q5_1: return avx2_vec_dot_q5_1;
	case ENG_TYPE_Q8_0: return avx2_vec_dot_q8_0;
	case ENG_TYPE_Q2_K: return avx2_vec_dot_q2_K;
	case ENG_TYPE_Q3_K: return avx2_vec_dot_q3_K;
	case ENG_TYPE_Q4_K: return avx2_vec_dot_q4_K;
	case ENG_TYPE_Q5_K: return avx2_vec_dot_q5_K;
	case ENG_TYPE_Q6_K: return avx2_vec_dot_q6_K;
	default:            return NULL;
	}
#else
	(void)t;
	return NULL;
#endif
}

eng_quantize_fn eng__quantize_avx2(eng_type dt)
{
#ifdef ENG_HAVE_X86
	switch (dt) {
	case ENG_TYPE_Q8_0: return quantize_q8_0;
	case ENG_TYPE_Q8_K: return quantize_q8_K;
	default:            return NULL;
	}
#else
	(void)dt;
	return NULL;
#endif
}

eng_repack_fn eng__repack_q8_0_avx2(eng_type t)
{
#ifdef ENG_HAVE_X86
	switch (t) {
	case ENG_TYPE_Q4_0: return avx2_repack_q4_0;
	case ENG_TYPE_Q5_0: return avx2_repack_q5_0;
	default:            return NULL;
	}
#else
	(void)t;
	return NULL;
#endif
}
