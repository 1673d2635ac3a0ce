/* kernels_scalar.c - scalar reference dot products of every weight type
 * with its activation format, and the run-time choice of SIMD level.
 * The references favour obviousness: unpack a block to integers, sum the
 * integer products exactly, scale once per group (see kernels.h). */
#include "config.h"
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include "kernels.h"

/* ---- float formats: double accumulation, the most accurate yardstick -- */

static float dot_f32(int64_t n, const void *w, const void *a)
{
	const float *x = w, *y = a;
	double s = 0;
	for (int64_t i = 0; i < n; i++)
		s += (double)x[i] * y[i];
	return (float)s;
}

static float dot_f16(int64_t n, const void *w, const void *a)
{
	const uint8_t *x = w;
	const float *y = a;
	double s = 0;
	for (int64_t i = 0; i < n; i++) {
		eng_f16 h;
		memcpy(&h, x + 2 * i, 2);
		s += (double)eng_f16_to_f32(h) * y[i];
	}
	return (float)s;
}

static float dot_bf16(int64_t n, const void *w, const void *a)
{
	const uint8_t *x = w;
	const float *y = a;
	double s = 0;
	for (int64_t i = 0; i < n; i++) {
		eng_bf16 h;
		memcpy(&h, x + 2 * i, 2);
		s += (double)eng_bf16_to_f32(h) * y[i];
	}
	return (float)s;
}

/* ---- 32-element formats ------------------------------------------------ */

static int32_t isum32(const int8_t *q, const int8_t *a)
{
	int32_t s = 0;
	for (int i = 0; i < 32; i++)
		s += q[i] * a[i];
	return s;
}

static int32_t usum32(const int8_t *q, const int8_t *a)
{
	int32_t s = 0;
	for (int i = 0; i < 32; i++)
		s += (uint8_t)q[i] * a[i];
	return s;
}

static float dot_q4_0(int64_t n, const void *w, const void *a)
{
	const eng_block_q4_0 *x = w;
	const eng_block_q8_0 *y = a;
	float s = 0;
	for (int64_t i = 0; i < n / 32; i++) {
		int8_t q[32];
		eng__unpack_q4_0(&x[i], q);
		s += eng_f16_to_f32(x[i].d) * eng_f16_to_f32(y[i].d) *
		     (float)isum32(q, y[i].qs);
	}
	return s;
}

static float dot_q5_0(int64_t n, const void *w, const void *a)
{
	const eng_block_q5_0 *x = w;
	const eng_block_q8_0 *y = a;
	float s = 0;
	for (int64_t i = 0; i < n / 32; i++) {
		int8_t q[32];
		eng__unpack_q5_0(&x[i], q);
		s += eng_f16_to_f32(x[i].d) * eng_f16_to_f32(y[i].d) *
		     (float)isum32(q, y[i].qs);
	}
	return s;
}

static float dot_q8_0(int64_t n, const void *w, const void *a)
{
	const eng_block_q8_0 *x = w;
	const eng_block_q8_0 *y = a;
	float s = 0;
	for (int64_t i = 0; i < n / 32; i++)
		s += eng_f16_to_f32(x[i].d) * eng_f16_to_f32(y[i].d) *
		     (float)isum32(x[i].qs, y[i].qs);
	return s;
}

/* sum (d q + m) a_i = d da sum(q qa) + m (da sum qa), the last factor being
 * the activation block's s. */
static float dot_q4_1(int64_t n, const void *w, const void *a)
{
	const eng_block_q4_1 *x = w;
	const eng_block_q8_1 *y = a;
	float s = 0;
	for (int64_t i = 0; i < n / 32; i++) {
		int8_t q[32];
		eng__unpack_q4_1(&x[i], q);
		s += eng_f16_to_f32(x[i].d) * eng_f16_to_f32(y[i].d) *
		     (float)usum32(q, y[i].qs) +
		     eng_f16_to_f32(x[i].m) * eng_f16_to_f32(y[i].s);
	}
	return s;
}

static float dot_q5_1(int64_t n, const void *w, const void *a)
{
	const eng_block_q5_1 *x = w;
	const eng_block_q8_1 *y = a;
	float s = 0;
	for (int64_t i = 0; i < n / 32; i++) {
		int8_t q[32];
		eng__unpack_q5_1(&x[i], q);
		s += eng_f16_to_f32(x[i].d) * eng_f16_to_f32(y[i].d) *
		     (float)usum32(q, y[i].qs) +
		     eng_f16_to_f32(x[i].m) * eng_f16_to_f32(y[i].s);
	}
	return s;
}

/* ---- K formats: integer sums per group, float once per super-block ---- */

static int32_t isum16(const int8_t *q, const int8_t *a)
{
	int32_t s = 0;
	for (int i = 0; i < 16; i++)
		s += q[i] * a[i];
	return s;
}

static float dot_q2_K(int64_t n, const void *w, const void *a)
{
	const eng_block_q2_K *x = w;
	const eng_block_q8_K *y = a;
	float s = 0;
	for (int64_t i = 0; i < n / 256; i++) {
		int8_t q[256];
		int32_t sq = 0, sm = 0;
		eng__unpack_q2_K(&x[i], q);
		for (int g = 0; g < 16; g++) {
			sq += (x[i].scales[g] & 15) *
			      isum16(q + 16 * g, y[i].qs + 16 * g);
			sm += (x[i].scales[g] >> 4) * y[i].bsums[g];
		}
		s += y[i].d * (eng_f16_to_f32(x[i].d) * (float)sq -
			       eng_f16_to_f32(x[i].dmin) * (float)sm);
	}
	return s;
}

static float dot_q3_K(int64_t n, const void *w, const void *a)
{
	const eng_block_q3_K *x = w;
	const eng_block_q8_K *y = a;
	float s = 0;
	for (int64_t i = 0; i < n / 256; i++) {
		int8_t q[256], sc[16];
		int32_t sq = 0;
		eng__unpack_q3_K(&x[i], q);
		eng__q3_K_scales(x[i].scales, sc);
		for (int g = 0; g < 16; g++)
			sq += sc[g] * isum16(q + 16 * g, y[i].qs + 16 * g);
		s += y[i].d * eng_f16_to_f32(x[i].d) * (float)sq;
	}
	return s;
}

/* q4_K and q5_K share their head (d, dmin, scales); only the quants
 * differ. */
static float dot_k45(int64_t n, const void *w, size_t bytes, const void *a,
		     void (*unpack)(const void *, int8_t *))
{
	const uint8_t *x = w;
	const eng_block_q8_K *y = a;
	float s = 0;
	for (int64_t i = 0; i < n / 256; i++, x += bytes) {
		const eng_block_q4_K *h = (const void *)x;
		int8_t q[256];
		int32_t sq = 0, sm = 0;
		unpack(x, q);
		for (int g = 0; g < 8; g++) {
			uint8_t sc, mn;
			eng__k_scale_min(g, h->scales, &sc, &mn);
			sq += sc * isum32(q + 32 * g, y[i].qs + 32 * g);
			sm += mn * (y[i].bsums[2 * g] + y[i].bsums[2 * g + 1]);
		}
		s += y[i].d * (eng_f16_to_f32(h->d) * (float)sq -
			       eng_f16_to_f32(h->dmin) * (float)sm);
	}
	return s;
}

static float dot_q4_K(int64_t n, const void *w, const void *a)
{
	return dot_k45(n, w, sizeof(eng_block_q4_K), a, eng__unpack_q4_K);
}

static float dot_q5_K(int64_t n, const void *w, const void *a)
{
	return dot_k45(n, w, sizeof(eng_block_q5_K), a, eng__unpack_q5_K);
}

static float dot_q6_K(int64_t n, const void *w, const void *a)
{
	const eng_block_q6_K *x = w;
	const eng_block_q8_K *y = a;
	float s = 0;
	for (int64_t i = 0; i < n / 256; i++) {
		int8_t q[256];
		int32_t sq = 0;
		eng__unpack_q6_K(&x[i], q);
		for (int g = 0; g < 16; g++)
			sq += x[i].scales[g] * isum16(q + 16 * g, y[i].qs + 16 * g);
		s += y[i].d * eng_f16_to_f32(x[i].d) * (float)sq;
	}
	return s;
}

/* The nt-token entry points loop over tokens: a reference needs no reuse. */
#define ENG__DEF_REF(name)                                                 \
	void eng_vec_dot_##name##_ref(int64_t n, const void *w,            \
				      const void *a, size_t a_stride,      \
				      float *s, size_t s_stride, int nt)   \
	{                                                                  \
		for (int t = 0; t < nt; t++)                               \
			s[(size_t)t * s_stride] = dot_##name(              \
				n, w, (const char *)a + (size_t)t * a_stride); \
	}
ENG__VEC_DOT_REFS(ENG__DEF_REF)
#undef ENG__DEF_REF

static eng_vec_dot_fn ref_of(eng_type t)
{
	switch (t) {
	case ENG_TYPE_F32:  return eng_vec_dot_f32_ref;
	case ENG_TYPE_F16:  return eng_vec_dot_f16_ref;
	case ENG_TYPE_BF16: return eng_vec_dot_bf16_ref;
	case ENG_TYPE_Q4_0: return eng_vec_dot_q4_0_ref;
	case ENG_TYPE_Q4_1: return eng_vec_dot_q4_1_ref;
	case ENG_TYPE_Q5_0: return eng_vec_dot_q5_0_ref;
	case ENG_TYPE_Q5_1: return eng_vec_dot_q5_1_ref;
	case ENG_TYPE_Q8_0: return eng_vec_dot_q8_0_ref;
	case ENG_TYPE_Q2_K: return eng_vec_dot_q2_K_ref;
	case ENG_TYPE_Q3_K: return eng_vec_dot_q3_K_ref;
	case ENG_TYPE_Q4_K: return eng_vec_dot_q4_K_ref;
	case ENG_TYPE_Q5_K: return eng_vec_dot_q5_K_ref;
	case ENG_TYPE_Q6_K: return eng_vec_dot_q6_K_ref;
	default:            return NULL;
	}
}

/* ---- SIMD level -------------------------------------------------------- */

static const char *const simd_names[] = { "scalar", "avx2", "avx512" };

const char *eng_simd_name(eng_simd level)
{
	if ((unsigned)level > ENG_SIMD_AVX512)
		return "unknown";
	return simd_names[level];
}

eng_simd eng_simd_supported(void)
{
#if defined(__x86_64__) && defined(__GNUC__)
	__builtin_cpu_init();
	if (__builtin_cpu_supports("avx512f") &&
	    __builtin_cpu_supports("avx512bw") &&
	    __builtin_cpu_supports("avx512vl") &&
	    __builtin_cpu_supports("avx512dq") &&
	    __builtin_cpu_supports("avx512vnni") &&
	    __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c"))
		return ENG_SIMD_AVX512;
	if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
	    __builtin_cpu_supports("f16c"))
		return ENG_SIMD_AVX2;
#endif
	return ENG_SIMD_SCALAR;
}

/* -1 until first use; then the level in force. */
static _Atomic int active_level = -1;

eng_simd eng_simd_active(void)
{
	int lv = atomic_load_explicit(&active_level, memory_order_relaxed);
	if (lv >= 0)
		return (eng_simd)lv;
	lv = (int)eng_simd_supported();
	const char *env = getenv("ENGRAM_SIMD");
	if (env) {
		for (int i = 0; i <= ENG_SIMD_AVX512; i++)
			if (!strcmp(env, simd_names[i]) && i < lv)
				lv = i;
	}
	atomic_store(&active_level, lv);
	return (eng_simd)lv;
}

int eng_simd_force(eng_simd level)
{
	if ((unsigned)level > ENG_SIMD_AVX512 || level > eng_simd_supported())
		return ENG_ERANGE;
	atomic_store(&active_level, (int)level);
	return 0;
}

eng_vec_dot_fn eng_vec_dot_get(eng_type t, eng_simd level)
{
	eng_vec_dot_fn f = NULL;
	if (level >= ENG_SIMD_AVX512)
		f = eng__vec_dot_avx512(t);
	if (!f && level >= ENG_SIMD_AVX2)
		f = eng__vec_dot_avx2(t);
	return f ? f : ref_of(t);
}

eng_tile_fn eng_tile_get(eng_type t, eng_simd level)
{
	return level >= ENG_SIMD_AVX512 ? eng__tile_avx512(t) : NULL;
}

static void repack_q4_0_ref(const void *src, void *dst, int64_t n)
{
	const eng_block_q4_0 *x = src;
	eng_block_q8_0 *y = dst;
	for (int64_t i = 0; i < n / 32; i++) {
		y[i].d = x[i].d;
		eng__unpack_q4_0(&x[i], y[i].qs);
	}
}

static void repack_q5_0_ref(const void *src, void *dst, int64_t n)
{
	const eng_block_q5_0 *x = src;
	eng_block_q8_0 *y = dst;
	for (int64_t i = 0; i < n / 32; i++) {
		y[i].d = x[i].d;
		eng__unpack_q5_0(&x[i], y[i].qs);
	}
}

eng_repack_fn eng_repack_q8_0_get(eng_type t, eng_simd level)
{
	eng_repack_fn f = NULL;
	if (level >= ENG_SIMD_AVX512)
		f = eng__repack_q8_0_avx512(t);
	if (!f && level >= ENG_SIMD_AVX2)
		f = eng__repack_q8_0_avx2(t);
	if (f)
		return f;
	return t == ENG_TYPE_Q4_0 ? repack_q4_0_ref
	     : t == ENG_TYPE_Q5_0 ? repack_q5_0_ref : NULL;
}
