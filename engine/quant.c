/* quant.c - block formats: type traits, half/bfloat16 conversion, scalar
 * dequantization of every type and quantization of activations to Q8.
 * Layouts and math follow ggml (ggml-common.h, ggml-quants.c); see
 * kernels.h for the per-format formulas. */
#include "config.h"
#include <math.h>
#include <stdint.h>
#include <string.h>
#include "kernels.h"

#define TRAIT(t, nm, bl, by, dt, hd) \
	[ENG_TYPE_##t] = { nm, bl, by, ENG_TYPE_##dt, hd }

/* Indexed by type id; entries with name NULL are ids eng_type lacks. */
static const eng_type_traits traits[] = {
	TRAIT(F32,  "f32",  1,  4,  F32, 1),
	TRAIT(F16,  "f16",  1,  2,  F32, 1),
	TRAIT(Q4_0, "q4_0", 32, sizeof(eng_block_q4_0), Q8_0, 1),
	TRAIT(Q4_1, "q4_1", 32, sizeof(eng_block_q4_1), Q8_1, 1),
	TRAIT(Q5_0, "q5_0", 32, sizeof(eng_block_q5_0), Q8_0, 1),
	TRAIT(Q5_1, "q5_1", 32, sizeof(eng_block_q5_1), Q8_1, 1),
	TRAIT(Q8_0, "q8_0", 32, sizeof(eng_block_q8_0), Q8_0, 1),
	TRAIT(Q8_1, "q8_1", 32, sizeof(eng_block_q8_1), Q8_1, 0),
	TRAIT(Q2_K, "q2_K", 256, sizeof(eng_block_q2_K), Q8_K, 1),
	TRAIT(Q3_K, "q3_K", 256, sizeof(eng_block_q3_K), Q8_K, 1),
	TRAIT(Q4_K, "q4_K", 256, sizeof(eng_block_q4_K), Q8_K, 1),
	TRAIT(Q5_K, "q5_K", 256, sizeof(eng_block_q5_K), Q8_K, 1),
	TRAIT(Q6_K, "q6_K", 256, sizeof(eng_block_q6_K), Q8_K, 1),
	TRAIT(Q8_K, "q8_K", 256, sizeof(eng_block_q8_K), Q8_K, 0),
	TRAIT(BF16, "bf16", 1,  2,  F32, 1),
};

const eng_type_traits *eng_type_traits_get(eng_type t)
{
	if ((unsigned)t >= sizeof traits / sizeof traits[0] || !traits[t].name)
		return NULL;
	return &traits[t];
}

int eng_row_bytes(eng_type t, int64_t n, size_t *bytes)
{
	const eng_type_traits *tr = eng_type_traits_get(t);
	if (!tr || !bytes || n <= 0 || n % tr->blck)
		return ENG_EINVAL;
	uint64_t nb = (uint64_t)(n / tr->blck);
	if (nb > SIZE_MAX / tr->bytes)
		return ENG_ERANGE;
	*bytes = (size_t)nb * tr->bytes;
	return 0;
}

/* ---- half and bfloat16 ------------------------------------------------- */

static uint32_t f32_bits(float f)
{
	uint32_t u;
	memcpy(&u, &f, 4);
	return u;
}

static float bits_f32(uint32_t u)
{
	float f;
	memcpy(&f, &u, 4);
	return f;
}

float eng_f16_to_f32(eng_f16 h)
{
	uint32_t sign = (uint32_t)(h & 0x8000) << 16;
	uint32_t exp = (h >> 10) & 31, mant = h & 0x3ff;
	if (exp == 0) {		/* zero or subnormal: mant * 2^-24 */
		float v = (float)mant * 0x1p-24f;
		return sign ? -v : v;
	}
	if (exp == 31)		/* inf or NaN */
		return bits_f32(sign | 0x7f800000u | (mant << 13));
	return bits_f32(sign | ((exp + 112) << 23) | (mant << 13));
}

eng_f16 eng_f32_to_f16(float f)
{
	uint32_t x = f32_bits(f);
	uint16_t sign = (uint16_t)((x >> 16) & 0x8000);
	x &= 0x7fffffffu;
	if (x > 0x7f800000u)	/* NaN: keep it quiet and a NaN */
		return (eng_f16)(sign | 0x7e00 | ((x >> 13) & 0x3ff));
	if (x >= 0x477ff000u)	/* rounds to 65536 or more: infinity */
		return (eng_f16)(sign | 0x7c00);
	if (x < 0x38800000u) {	/* below 2^-14: a subnormal half (or 0) */
		float v = bits_f32(x) * 0x1p24f;	/* exact: v < 1024 */
		return (eng_f16)(sign | (uint16_t)lrintf(v));
	}
	x += 0xfffu + ((x >> 13) & 1);	/* round to nearest even */
	return (eng_f16)(sign | ((x - 0x38000000u) >> 13));
}

float eng_bf16_to_f32(eng_bf16 h)
{
	return bits_f32((uint32_t)h << 16);
}

eng_bf16 eng_f32_to_bf16(float f)
{
	uint32_t x = f32_bits(f);
	if ((x & 0x7fffffffu) > 0x7f800000u)
		return (eng_bf16)((x >> 16) | 64);
	return (eng_bf16)((x + 0x7fffu + ((x >> 16) & 1)) >> 16);
}

/* ---- unpacking: quants of one block as small integers ----------------- */

/* Scale i has its low 4 bits in nibble (i / 8) of byte i % 8 and its high
 * 2 bits at bit 2 (i / 4) of byte 8 + i % 4.  Done four scales per 32-bit
 * word: the SIMD kernels call this once per super-block. */
void eng__q3_K_scales(const uint8_t p[12], int8_t out[16])
{
	uint32_t a0, a1, h, w[4];
	memcpy(&a0, p, 4);
	memcpy(&a1, p + 4, 4);
	memcpy(&h, p + 8, 4);
	const uint32_t lo4 = 0x0f0f0f0fu, lo2 = 0x03030303u;
	w[0] = (a0 & lo4) | ((h & lo2) << 4);
	w[1] = (a1 & lo4) | (((h >> 2) & lo2) << 4);
	w[2] = ((a0 >> 4) & lo4) | (((h >> 4) & lo2) << 4);
	w[3] = ((a1 >> 4) & lo4) | (((h >> 6) & lo2) << 4);
	for (int k = 0; k < 4; k++)	/* bytewise - 32, no borrow across bytes */
		w[k] = ((w[k] | 0x80808080u) - 0x20202020u) ^ 0x80808080u;
	memcpy(out, w, 16);
}

/* Low nibbles are elements 0..15, high nibbles 16..31. */
static void unpack_nibbles32(const uint8_t qs[16], uint8_t q[32])
{
	for (int i = 0; i < 16; i++) {
		q[i] = qs[i] & 15;
		q[i + 16] = qs[i] >> 4;
	}
}

static void unpack_q5(const uint8_t qh[4], const uint8_t qs[16],
		      uint8_t q[32])
{
	uint32_t h = (uint32_t)qh[0] | (uint32_t)qh[1] << 8 |
		     (uint32_t)qh[2] << 16 | (uint32_t)qh[3] << 24;
	unpack_nibbles32(qs, q);
	for (int i = 0; i < 32; i++)
		q[i] |= (uint8_t)(((h >> i) & 1) << 4);
}

void eng__unpack_q4_0(const void *blk, int8_t q[32])
{
	const eng_block_q4_0 *b = blk;
	uint8_t u[32];
	unpack_nibbles32(b->qs, u);
	for (int i = 0; i < 32; i++)
		q[i] = (int8_t)(u[i] - 8);
}

void eng__unpack_q4_1(const void *blk, int8_t q[32])
{
	const eng_block_q4_1 *b = blk;
	unpack_nibbles32(b->qs, (uint8_t *)q);
}

void eng__unpack_q5_0(const void *blk, int8_t q[32])
{
	const eng_block_q5_0 *b = blk;
	uint8_t u[32];
	unpack_q5(b->qh, b->qs, u);
	for (int i = 0; i < 32; i++)
		q[i] = (int8_t)(u[i] - 16);
}

void eng__unpack_q5_1(const void *blk, int8_t q[32])
{
	const eng_block_q5_1 *b = blk;
	unpack_q5(b->qh, b->qs, (uint8_t *)q);
}

/* 2-bit planes: element j*128 + s*32 + l is (qs[j*32 + l] >> 2s) & 3. */
static void unpack_2bit(const uint8_t qs[64], int8_t q[256])
{
	for (int j = 0; j < 2; j++)
		for (int s = 0; s < 4; s++)
			for (int l = 0; l < 32; l++)
				q[j * 128 + s * 32 + l] =
					(int8_t)((qs[j * 32 + l] >> (2 * s)) & 3);
}

void eng__unpack_q2_K(const void *blk, int8_t q[256])
{
	const eng_block_q2_K *b = blk;
	unpack_2bit(b->qs, q);
}

void eng__unpack_q3_K(const void *blk, int8_t q[256])
{
	const eng_block_q3_K *b = blk;
	unpack_2bit(b->qs, q);
	for (int e = 0; e < 256; e++)
		if (!((b->hmask[e % 32] >> (e / 32)) & 1))
			q[e] = (int8_t)(q[e] - 4);
}

/* Element j*64 + h*32 + l is (qs[j*32 + l] >> 4h) & 15. */
static void unpack_4bit_k(const uint8_t qs[128], int8_t q[256])
{
	for (int j = 0; j < 4; j++)
		for (int l = 0; l < 32; l++) {
			q[j * 64 + l] = (int8_t)(qs[j * 32 + l] & 15);
			q[j * 64 + 32 + l] = (int8_t)(qs[j * 32 + l] >> 4);
		}
}

void eng__unpack_q4_K(const void *blk, int8_t q[256])
{
	const eng_block_q4_K *b = blk;
	unpack_4bit_k(b->qs, q);
}

void eng__unpack_q5_K(const void *blk, int8_t q[256])
{
	const eng_block_q5_K *b = blk;
	unpack_4bit_k(b->qs, q);
	for (int e = 0; e < 256; e++)
		q[e] = (int8_t)(q[e] | (((b->qh[e % 32] >> (e / 32)) & 1) << 4));
}

void eng__unpack_q6_K(const void *blk, int8_t q[256])
{
	const eng_block_q6_K *b = blk;
	for (int j = 0; j < 2; j++)
		for (int s = 0; s < 4; s++)
			for (int l = 0; l < 32; l++) {
				int lo = (b->ql[j * 64 + (s & 1) * 32 + l] >>
					  (4 * (s >> 1))) & 15;
				int hi = (b->qh[j * 32 + l] >> (2 * s)) & 3;
				q[j * 128 + s * 32 + l] =
					(int8_t)((lo | hi << 4) - 32);
			}
}

/* ---- dequantization ---------------------------------------------------- */

static void dq_block(eng_type t, const uint8_t *src, float *y)
{
	int8_t q[256];
	switch (t) {
	case ENG_TYPE_Q4_0: case ENG_TYPE_Q5_0: case ENG_TYPE_Q8_0: {
		float d = eng_f16_to_f32(*(const eng_f16 *)(const void *)src);
		if (t == ENG_TYPE_Q4_0)
			eng__unpack_q4_0(src, q);
		else if (t == ENG_TYPE_Q5_0)
			eng__unpack_q5_0(src, q);
		else
			memcpy(q, ((const eng_block_q8_0 *)(const void *)src)->qs, 32);
		for (int i = 0; i < 32; i++)
			y[i] = d * q[i];
		break;
	}
	case ENG_TYPE_Q4_1: case ENG_TYPE_Q5_1: {
		const eng_block_q4_1 *b = (const void *)src;	/* d, m lead both */
		float d = eng_f16_to_f32(b->d), m = eng_f16_to_f32(b->m);
		if (t == ENG_TYPE_Q4_1)
			eng__unpack_q4_1(src, q);
		else
			eng__unpack_q5_1(src, q);
		for (int i = 0; i < 32; i++)
			y[i] = d * (uint8_t)q[i] + m;
		break;
	}
	case ENG_TYPE_Q8_1: {
		const eng_block_q8_1 *b = (const void *)src;
		float d = eng_f16_to_f32(b->d);
		for (int i = 0; i < 32; i++)
			y[i] = d * b->qs[i];
		break;
	}
	case ENG_TYPE_Q2_K: {
		const eng_block_q2_K *b = (const void *)src;
		float d = eng_f16_to_f32(b->d), dm = eng_f16_to_f32(b->dmin);
		eng__unpack_q2_K(b, q);
		for (int i = 0; i < 256; i++) {
			uint8_t sc = b->scales[i / 16];
			y[i] = d * (sc & 15) * q[i] - dm * (sc >> 4);
		}
		break;
	}
	case ENG_TYPE_Q3_K: {
		const eng_block_q3_K *b = (const void *)src;
		float d = eng_f16_to_f32(b->d);
		int8_t sc[16];
		eng__q3_K_scales(b->scales, sc);
		eng__unpack_q3_K(b, q);
		for (int i = 0; i < 256; i++)
			y[i] = d * sc[i / 16] * q[i];
		break;
	}
	case ENG_TYPE_Q4_K: case ENG_TYPE_Q5_K: {
		const eng_block_q4_K *b = (const void *)src;	/* same head */
		float d = eng_f16_to_f32(b->d), dm = eng_f16_to_f32(b->dmin);
		if (t == ENG_TYPE_Q4_K)
			eng__unpack_q4_K(src, q);
		else
			eng__unpack_q5_K(src, q);
		for (int g = 0; g < 8; g++) {
			uint8_t sc, mn;
			eng__k_scale_min(g, b->scales, &sc, &mn);
			for (int l = 0; l < 32; l++)
				y[g * 32 + l] = d * sc * q[g * 32 + l] - dm * mn;
		}
		break;
	}
	case ENG_TYPE_Q6_K: {
		const eng_block_q6_K *b = (const void *)src;
		float d = eng_f16_to_f32(b->d);
		eng__unpack_q6_K(b, q);
		for (int i = 0; i < 256; i++)
			y[i] = d * b->scales[i / 16] * q[i];
		break;
	}
	case ENG_TYPE_Q8_K: {
		const eng_block_q8_K *b = (const void *)src;
		for (int i = 0; i < 256; i++)
			y[i] = b->d * b->qs[i];
		break;
	}
	default:
		break;
	}
}

int eng_dequant_row_ref(eng_type t, const void *src, float *dst, int64_t n)
{
	const eng_type_traits *tr = eng_type_traits_get(t);
	if (!tr || !src || !dst || n <= 0 || n % tr->blck)
		return ENG_EINVAL;
	const uint8_t *p = src;
	switch (t) {
	case ENG_TYPE_F32:
		memcpy(dst, src, (size_t)n * 4);
		return 0;
	case ENG_TYPE_F16:
	case ENG_TYPE_BF16:
		for (int64_t i = 0; i < n; i++) {
			uint16_t h;
			memcpy(&h, p + 2 * i, 2);
			dst[i] = t == ENG_TYPE_F16 ? eng_f16_to_f32(h)
						   : eng_bf16_to_f32(h);
		}
		return 0;
	default:
		for (int64_t i = 0; i < n / tr->blck; i++)
			dq_block(t, p + i * tr->bytes, dst + i * tr->blck);
		return 0;
	}
}

/* ---- quantization of activations --------------------------------------- */

static float amax_of(const float *x, int n)
{
	float m = 0.0f;
	for (int i = 0; i < n; i++)
		m = fmaxf(m, fabsf(x[i]));
	return m;
}

/* As llama.cpp's x86 build quantizes Q8_0 activations (its AVX2 path, not
 * ggml's scalar reference): the inverse scale is 127 / amax and products
 * round half to even.  Matching it makes our logits equal llama.cpp's bit
 * for bit where the summation order agrees. */
void eng_quantize_row_q8_0_ref(const float *x, void *y, int64_t n)
{
	eng_block_q8_0 *b = y;
	for (int64_t i = 0; i < n / 32; i++, x += 32) {
		float amax = amax_of(x, 32);
		float d = amax / 127.0f, id = amax != 0.0f ? 127.0f / amax : 0.0f;
		b[i].d = eng_f32_to_f16(d);
		for (int l = 0; l < 32; l++)
			b[i].qs[l] = (int8_t)nearbyintf(x[l] * id);
	}
}

void eng_quantize_row_q8_1_ref(const float *x, void *y, int64_t n)
{
	eng_block_q8_1 *b = y;
	for (int64_t i = 0; i < n / 32; i++, x += 32) {
		float d = amax_of(x, 32) / 127.0f, id = d ? 1.0f / d : 0.0f;
		int sum = 0;
		for (int l = 0; l < 32; l++) {
			b[i].qs[l] = (int8_t)roundf(x[l] * id);
			sum += b[i].qs[l];
		}
		b[i].d = eng_f32_to_f16(d);
		b[i].s = eng_f32_to_f16(d * (float)sum);
	}
}

void eng_quantize_row_q8_K_ref(const float *x, void *y, int64_t n)
{
	eng_block_q8_K *b = y;
	for (int64_t i = 0; i < n / 256; i++, x += 256) {
		float amax = amax_of(x, 256);
		float id = amax ? 127.0f / amax : 0.0f;
		/* 1 / (127 / amax), not amax / 127: llama.cpp's reference
		 * (the one its x86 build uses for Q8_K) stores 1/iscale, and
		 * the two differ in the last bit for some amax. */
		b[i].d = amax ? 1.0f / id : 0.0f;
		for (int g = 0; g < 16; g++) {
			int sum = 0;
			for (int l = 0; l < 16; l++) {
				/* clamp: x * id can round just past 127 */
				float v = fminf(127.0f, fmaxf(-127.0f,
						x[g * 16 + l] * id));
				b[i].qs[g * 16 + l] = (int8_t)lrintf(v);
				sum += b[i].qs[g * 16 + l];
			}
			b[i].bsums[g] = (int16_t)sum;
		}
	}
}

int eng_quantize_row(eng_type dt, const float *x, void *y, int64_t n)
{
	const eng_type_traits *tr = eng_type_traits_get(dt);
	if (!tr || !x || !y || n <= 0 || n % tr->blck)
		return ENG_EINVAL;
	eng_quantize_fn fast = NULL;
	if (eng_simd_active() >= ENG_SIMD_AVX2)
		fast = eng__quantize_avx2(dt);
	if (fast) {
		fast(x, y, n);
		return 0;
	}
	switch (dt) {
	case ENG_TYPE_F32:
		memcpy(y, x, (size_t)n * sizeof(float));
		return 0;
	case ENG_TYPE_Q8_0:
		eng_quantize_row_q8_0_ref(x, y, n);
		return 0;
	case ENG_TYPE_Q8_1:
		eng_quantize_row_q8_1_ref(x, y, n);
		return 0;
	case ENG_TYPE_Q8_K:
		eng_quantize_row_q8_K_ref(x, y, n);
		return 0;
	default:
		return ENG_EINVAL;
	}
}
