/* kernels_testutil.h - random weights and activations for the kernel
 * suites (test_quant.c, test_matmul.c): deterministic, every scale finite,
 * quant bytes uniformly random so every bit pattern of a block occurs. */
#ifndef ENGRAM_TESTS_KERNELS_TESTUTIL_H
#define ENGRAM_TESTS_KERNELS_TESTUTIL_H

#include <math.h>
#include <stdint.h>
#include <string.h>
#include "kernels.h"

static uint64_t tu_state = 0x9e3779b97f4a7c15ull;

static inline void tu_seed(uint64_t s)
{
	tu_state = s * 0x9e3779b97f4a7c15ull + 1;
}

static inline uint64_t tu_next(void)
{
	uint64_t x = tu_state;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return tu_state = x;
}

/* Uniform in [-1, 1). */
static inline float tu_unit(void)
{
	return (float)((double)(tu_next() >> 11) * 0x1p-52 - 1.0);
}

static inline void tu_floats(float *x, int64_t n, float scale)
{
	for (int64_t i = 0; i < n; i++)
		x[i] = scale * tu_unit();
}

/* Offsets of the f16 scale fields in a block of t (-1 ends the list). */
static inline const int *tu_f16_fields(eng_type t)
{
	static const int d0[] = { 0, -1 }, d0m2[] = { 0, 2, -1 },
			 q2k[] = { 80, 82, -1 }, q3k[] = { 108, -1 },
			 q6k[] = { 208, -1 }, none[] = { -1 };
	switch (t) {
	case ENG_TYPE_Q4_0: case ENG_TYPE_Q5_0: case ENG_TYPE_Q8_0:
		return d0;
	case ENG_TYPE_Q4_1: case ENG_TYPE_Q5_1:
	case ENG_TYPE_Q4_K: case ENG_TYPE_Q5_K:
		return d0m2;
	case ENG_TYPE_Q2_K: return q2k;
	case ENG_TYPE_Q3_K: return q3k;
	case ENG_TYPE_Q6_K: return q6k;
	default: return none;
	}
}

/* n elements of weight type t at buf (eng_row_bytes(t, n) bytes). */
static inline void tu_weights(eng_type t, void *buf, int64_t n)
{
	const eng_type_traits *tr = eng_type_traits_get(t);
	uint8_t *p = buf;
	if (t == ENG_TYPE_F32 || t == ENG_TYPE_F16 || t == ENG_TYPE_BF16) {
		for (int64_t i = 0; i < n; i++) {
			float v = tu_unit();
			if (t == ENG_TYPE_F32) {
				memcpy(p + 4 * i, &v, 4);
			} else {
				uint16_t h = t == ENG_TYPE_F16 ? eng_f32_to_f16(v)
							       : eng_f32_to_bf16(v);
				memcpy(p + 2 * i, &h, 2);
			}
		}
		return;
	}
	size_t bytes = (size_t)(n / tr->blck) * tr->bytes;
	for (size_t i = 0; i < bytes; i++)
		p[i] = (uint8_t)tu_next();
	for (int64_t b = 0; b < n / tr->blck; b++) {
		const int *f = tu_f16_fields(t);
		for (; *f >= 0; f++) {
			/* magnitudes like real scales: 1e-4 .. 0.1 */
			float v = tu_unit() * powf(10.0f, -1.0f - 3.0f * fabsf(tu_unit()));
			eng_f16 h = eng_f32_to_f16(v);
			memcpy(p + b * tr->bytes + *f, &h, 2);
		}
	}
}

/* The weight types that have dot products, in id order. */
static const eng_type tu_dot_types[] = {
	ENG_TYPE_F32, ENG_TYPE_F16, ENG_TYPE_Q4_0, ENG_TYPE_Q4_1,
	ENG_TYPE_Q5_0, ENG_TYPE_Q5_1, ENG_TYPE_Q8_0, ENG_TYPE_Q2_K,
	ENG_TYPE_Q3_K, ENG_TYPE_Q4_K, ENG_TYPE_Q5_K, ENG_TYPE_Q6_K,
	ENG_TYPE_BF16,
};
#define TU_N_DOT_TYPES ((int)(sizeof tu_dot_types / sizeof tu_dot_types[0]))

#endif
