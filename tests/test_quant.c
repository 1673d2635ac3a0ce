/* test_quant.c - block formats: dequantization of every type against golden
 * data from the gguf Python package (tests/golden/quant/), half/bfloat16
 * conversion, Q8 activation quantizers (round-trip bounds), type sizes, the
 * scalar dot products against dequantize-then-multiply, bad arguments. */
#include "config.h"
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "kernels.h"
#include "kernels_testutil.h"

/* ---- golden data ------------------------------------------------------- */

struct fixture {
	char version[17];
	uint32_t type, n_elems, n_bytes;
	uint8_t *data;
	float *want;
};

static void fixture_load(const char *name, struct fixture *fx)
{
	const char *src = getenv("ENGRAM_SRCDIR");
	char path[4096];
	snprintf(path, sizeof path, "%s/tests/golden/quant/%s.bin",
		 src ? src : ".", name);
	FILE *f = fopen(path, "rb");
	ck_assert_msg(f != NULL, "cannot open %s", path);
	char magic[8];
	uint32_t h[3];
	memset(fx, 0, sizeof *fx);
	ck_assert_uint_eq(fread(magic, 1, 8, f), 8);
	ck_assert_int_eq(memcmp(magic, "ENGQFIX1", 8), 0);
	ck_assert_uint_eq(fread(fx->version, 1, 16, f), 16);
	ck_assert_uint_eq(fread(h, 4, 3, f), 3);
	fx->type = h[0];
	fx->n_elems = h[1];
	fx->n_bytes = h[2];
	ck_assert_uint_le(fx->n_bytes, 1u << 20);
	ck_assert_uint_le(fx->n_elems, 1u << 20);
	fx->data = malloc(fx->n_bytes);
	fx->want = malloc((size_t)fx->n_elems * 4);
	ck_assert_ptr_nonnull(fx->data);
	ck_assert_ptr_nonnull(fx->want);
	ck_assert_uint_eq(fread(fx->data, 1, fx->n_bytes, f), fx->n_bytes);
	ck_assert_uint_eq(fread(fx->want, 4, fx->n_elems, f), fx->n_elems);
	fclose(f);
}

static const char *const fixture_names[] = {
	"f32", "f16", "bf16", "q4_0", "q4_1", "q5_0", "q5_1", "q8_0",
	"q2_K", "q3_K", "q4_K", "q5_K", "q6_K",
};

/* Our dequantization equals gguf's up to float contraction: products may
 * fuse into an FMA here and not in numpy. */
#define DEQUANT_REL_TOL 2e-7
#define DEQUANT_ABS_TOL 1e-30

START_TEST(test_dequant_golden)
{
	struct fixture fx;
	fixture_load(fixture_names[_i], &fx);
	ck_assert_msg(!strncmp(fx.version, "gguf ", 5), "version %s", fx.version);
	const eng_type_traits *tr = eng_type_traits_get((eng_type)fx.type);
	ck_assert_ptr_nonnull(tr);
	ck_assert_str_eq(tr->name, fixture_names[_i]);
	size_t bytes;
	ck_assert_int_eq(eng_row_bytes((eng_type)fx.type, fx.n_elems, &bytes), 0);
	ck_assert_uint_eq(bytes, fx.n_bytes);
	float *got = malloc((size_t)fx.n_elems * 4);
	ck_assert_int_eq(eng_dequant_row_ref((eng_type)fx.type, fx.data, got,
					     fx.n_elems), 0);
	for (uint32_t i = 0; i < fx.n_elems; i++) {
		double w = fx.want[i], g = got[i];
		ck_assert_msg(fabs(w - g) <= DEQUANT_REL_TOL * fabs(w) + DEQUANT_ABS_TOL,
			      "%s[%u]: got %.9g want %.9g", tr->name, i, g, w);
	}
	free(got);
	free(fx.data);
	free(fx.want);
}
END_TEST

/* ---- traits ------------------------------------------------------------ */

START_TEST(test_traits_and_sizes)
{
	static const struct { eng_type t; int64_t blck; size_t bytes; eng_type dt; } want[] = {
		{ ENG_TYPE_F32, 1, 4, ENG_TYPE_F32 },
		{ ENG_TYPE_F16, 1, 2, ENG_TYPE_F32 },
		{ ENG_TYPE_BF16, 1, 2, ENG_TYPE_F32 },
		{ ENG_TYPE_Q4_0, 32, 18, ENG_TYPE_Q8_0 },
		{ ENG_TYPE_Q4_1, 32, 20, ENG_TYPE_Q8_1 },
		{ ENG_TYPE_Q5_0, 32, 22, ENG_TYPE_Q8_0 },
		{ ENG_TYPE_Q5_1, 32, 24, ENG_TYPE_Q8_1 },
		{ ENG_TYPE_Q8_0, 32, 34, ENG_TYPE_Q8_0 },
		{ ENG_TYPE_Q8_1, 32, 36, ENG_TYPE_Q8_1 },
		{ ENG_TYPE_Q2_K, 256, 84, ENG_TYPE_Q8_K },
		{ ENG_TYPE_Q3_K, 256, 110, ENG_TYPE_Q8_K },
		{ ENG_TYPE_Q4_K, 256, 144, ENG_TYPE_Q8_K },
		{ ENG_TYPE_Q5_K, 256, 176, ENG_TYPE_Q8_K },
		{ ENG_TYPE_Q6_K, 256, 210, ENG_TYPE_Q8_K },
		{ ENG_TYPE_Q8_K, 256, 292, ENG_TYPE_Q8_K },
	};
	for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
		const eng_type_traits *tr = eng_type_traits_get(want[i].t);
		ck_assert_ptr_nonnull(tr);
		ck_assert_int_eq(tr->blck, want[i].blck);
		ck_assert_uint_eq(tr->bytes, want[i].bytes);
		ck_assert_int_eq(tr->dot_type, want[i].dt);
		size_t b;
		ck_assert_int_eq(eng_row_bytes(want[i].t, 3 * tr->blck, &b), 0);
		ck_assert_uint_eq(b, 3 * tr->bytes);
	}
	/* ids ggml has but we do not (4, 5: old q4_2/q4_3; 16+) are refused */
	ck_assert_ptr_null(eng_type_traits_get((eng_type)4));
	ck_assert_ptr_null(eng_type_traits_get((eng_type)16));
	ck_assert_ptr_null(eng_type_traits_get((eng_type)31));
	ck_assert_ptr_null(eng_type_traits_get((eng_type)-1));
	size_t b;
	ck_assert_int_eq(eng_row_bytes(ENG_TYPE_Q4_K, 255, &b), ENG_EINVAL);
	ck_assert_int_eq(eng_row_bytes(ENG_TYPE_Q4_K, 0, &b), ENG_EINVAL);
	ck_assert_int_eq(eng_row_bytes(ENG_TYPE_Q4_K, -256, &b), ENG_EINVAL);
	ck_assert_int_eq(eng_row_bytes((eng_type)5, 32, &b), ENG_EINVAL);
	ck_assert_int_eq(eng_row_bytes(ENG_TYPE_F32, INT64_MAX, &b), ENG_ERANGE);
}
END_TEST

/* ---- half and bfloat16 ------------------------------------------------- */

START_TEST(test_f16_roundtrip_all)
{
	for (uint32_t h = 0; h < 0x10000; h++) {
		float f = eng_f16_to_f32((eng_f16)h);
		if ((h & 0x7c00) == 0x7c00 && (h & 0x3ff)) {
			ck_assert(isnan(f));
			ck_assert(isnan(eng_f16_to_f32(eng_f32_to_f16(f))));
			continue;
		}
		ck_assert_msg(eng_f32_to_f16(f) == h, "half %04x -> %g", h, f);
	}
	ck_assert_float_eq(eng_f16_to_f32(0x3c00), 1.0f);
	ck_assert_float_eq(eng_f16_to_f32(0xc000), -2.0f);
	ck_assert_float_eq(eng_f16_to_f32(0x0001), 0x1p-24f);
	ck_assert_float_eq(eng_f16_to_f32(0x7bff), 65504.0f);
}
END_TEST

START_TEST(test_f16_rounding)
{
	ck_assert_uint_eq(eng_f32_to_f16(65519.0f), 0x7bff);
	ck_assert_uint_eq(eng_f32_to_f16(65520.0f), 0x7c00);	/* tie -> inf */
	ck_assert_uint_eq(eng_f32_to_f16(-1e9f), 0xfc00);
	ck_assert_uint_eq(eng_f32_to_f16(1.0f + 0x1p-11f), 0x3c00);	/* tie, even */
	ck_assert_uint_eq(eng_f32_to_f16(1.0f + 3 * 0x1p-11f), 0x3c02);
	ck_assert_uint_eq(eng_f32_to_f16(0x1p-25f), 0x0000);	/* tie, even */
	ck_assert_uint_eq(eng_f32_to_f16(3 * 0x1p-25f), 0x0002);
	ck_assert_uint_eq(eng_f32_to_f16(0x1p-14f - 0x1p-26f), 0x0400);
	ck_assert_uint_eq(eng_f32_to_f16(-0.0f), 0x8000);
	ck_assert_uint_eq(eng_f32_to_f16(1e-10f), 0x0000);
	ck_assert_uint_eq(eng_f32_to_f16(INFINITY), 0x7c00);
	ck_assert(isnan(eng_f16_to_f32(eng_f32_to_f16(NAN))));
	ck_assert_uint_eq(eng_f32_to_bf16(1.0f), 0x3f80);
	ck_assert_uint_eq(eng_f32_to_bf16(1.0f + 0x1p-8f), 0x3f80);	/* tie, even */
	ck_assert_uint_eq(eng_f32_to_bf16(1.0f + 3 * 0x1p-8f), 0x3f82);
	ck_assert_float_eq(eng_bf16_to_f32(0xc040), -3.0f);
	ck_assert(isnan(eng_bf16_to_f32(eng_f32_to_bf16(NAN))));
}
END_TEST

/* ---- activation quantizers ---------------------------------------------- */

/* Round-trip bound of a symmetric 8-bit block: half a step, plus the
 * rounding of d to f16 times the largest |q| (127).  That rounding is
 * 2^-11 relative, or 2^-25 absolute where d is a subnormal half (blocks
 * with max |x| below about 8e-3: the format's own limit). */
#define Q8_0_ROUNDTRIP_STEPS (0.5 + 127.0 * 0x1p-11)
#define Q8_0_F16_SUBNORMAL_ERR (127.0 * 0x1p-25)
#define Q8_K_ROUNDTRIP_STEPS (0.5 + 1e-5)

static void check_q8_roundtrip(eng_type dt, int64_t n, float scale)
{
	const eng_type_traits *tr = eng_type_traits_get(dt);
	float *x = malloc((size_t)n * 4), *y = malloc((size_t)n * 4);
	size_t bytes;
	ck_assert_int_eq(eng_row_bytes(dt, n, &bytes), 0);
	uint8_t *q = malloc(bytes), *q2 = malloc(bytes);
	tu_floats(x, n, scale);
	if (n >= 64)	/* an all-zero block, and one spike */
		for (int i = 0; i < tr->blck; i++)
			x[i] = 0.0f;
	x[n - 1] = 40.0f * scale;
	if (dt == ENG_TYPE_Q8_0)
		eng_quantize_row_q8_0_ref(x, q, n);
	else if (dt == ENG_TYPE_Q8_1)
		eng_quantize_row_q8_1_ref(x, q, n);
	else
		eng_quantize_row_q8_K_ref(x, q, n);
	ck_assert_int_eq(eng_dequant_row_ref(dt, q, y, n), 0);
	double steps = dt == ENG_TYPE_Q8_K ? Q8_K_ROUNDTRIP_STEPS : Q8_0_ROUNDTRIP_STEPS;
	for (int64_t b = 0; b < n / tr->blck; b++) {
		float amax = 0;
		for (int i = 0; i < tr->blck; i++)
			amax = fmaxf(amax, fabsf(x[b * tr->blck + i]));
		for (int i = 0; i < tr->blck; i++) {
			int64_t k = b * tr->blck + i;
			double bound = steps * amax / 127.0 + 1e-30;
			if (dt != ENG_TYPE_Q8_K)
				bound += Q8_0_F16_SUBNORMAL_ERR;
			ck_assert_msg(fabs((double)x[k] - y[k]) <= bound,
				      "%s[%lld]: %g -> %g", tr->name, (long long)k, x[k], y[k]);
		}
	}
	/* every quant in [-127, 127]; Q8_1's s and Q8_K's bsums are the sums */
	for (int64_t b = 0; b < n / tr->blck; b++) {
		const uint8_t *blk = q + b * tr->bytes;
		if (dt == ENG_TYPE_Q8_K) {
			const eng_block_q8_K *k = (const void *)blk;
			for (int g = 0; g < 16; g++) {
				int s = 0;
				for (int i = 0; i < 16; i++) {
					ck_assert_int_ge(k->qs[16 * g + i], -127);
					s += k->qs[16 * g + i];
				}
				ck_assert_int_eq(s, k->bsums[g]);
			}
		} else {
			const int8_t *qs = dt == ENG_TYPE_Q8_0
				? ((const eng_block_q8_0 *)(const void *)blk)->qs
				: ((const eng_block_q8_1 *)(const void *)blk)->qs;
			int s = 0;
			for (int i = 0; i < 32; i++) {
				ck_assert_int_ge(qs[i], -127);
				s += qs[i];
			}
			if (dt == ENG_TYPE_Q8_1) {
				const eng_block_q8_1 *k = (const void *)blk;
				double want = eng_f16_to_f32(k->d) * s;
				ck_assert(fabs(eng_f16_to_f32(k->s) - want) <=
					  fabs(want) * 0x1p-10 + 1e-7);
			}
		}
	}
	/* the dispatching entry point gives the same bytes */
	ck_assert_int_eq(eng_quantize_row(dt, x, q2, n), 0);
	ck_assert_int_eq(memcmp(q, q2, bytes), 0);
	free(x);
	free(y);
	free(q);
	free(q2);
}

START_TEST(test_q8_0_roundtrip)
{
	tu_seed(1);
	check_q8_roundtrip(ENG_TYPE_Q8_0, 32, 1.0f);
	check_q8_roundtrip(ENG_TYPE_Q8_0, 640, 3.0f);
	check_q8_roundtrip(ENG_TYPE_Q8_0, 2048, 1e-3f);
}
END_TEST

START_TEST(test_q8_1_roundtrip)
{
	tu_seed(2);
	check_q8_roundtrip(ENG_TYPE_Q8_1, 32, 1.0f);
	check_q8_roundtrip(ENG_TYPE_Q8_1, 640, 7.0f);
}
END_TEST

START_TEST(test_q8_K_roundtrip)
{
	tu_seed(3);
	check_q8_roundtrip(ENG_TYPE_Q8_K, 256, 1.0f);
	check_q8_roundtrip(ENG_TYPE_Q8_K, 2048, 50.0f);
	check_q8_roundtrip(ENG_TYPE_Q8_K, 1024, 1e-4f);
}
END_TEST

/* The fast quantizers (eng_quantize_row at each SIMD level) give the same
 * bytes as the references, halves and clamping included. */
START_TEST(test_quantize_levels_match_ref)
{
	static const eng_type dts[] = { ENG_TYPE_Q8_0, ENG_TYPE_Q8_1, ENG_TYPE_Q8_K };
	const int64_t n = 2048;
	float *x = malloc(n * 4);
	uint8_t *want = malloc(n * 2), *got = malloc(n * 2);
	tu_seed(77);
	for (int rep = 0; rep < 8; rep++) {
		tu_floats(x, n, rep < 4 ? 1.0f : 1e4f);
		if (rep & 1) {
			/* max 127: d = 1, so x * id hits exact halves */
			for (int64_t i = 0; i < n; i++)
				x[i] = (float)((int)(tu_next() % 255) - 127) + 0.5f * (i % 2);
			for (int64_t b = 0; b < n; b += 32)
				x[b] = 127.0f;
		}
		for (size_t k = 0; k < sizeof dts / sizeof dts[0]; k++) {
			eng_type dt = dts[k];
			if (dt == ENG_TYPE_Q8_0)
				eng_quantize_row_q8_0_ref(x, want, n);
			else if (dt == ENG_TYPE_Q8_1)
				eng_quantize_row_q8_1_ref(x, want, n);
			else
				eng_quantize_row_q8_K_ref(x, want, n);
			size_t bytes;
			ck_assert_int_eq(eng_row_bytes(dt, n, &bytes), 0);
			for (int lv = 0; lv <= (int)eng_simd_supported(); lv++) {
				ck_assert_int_eq(eng_simd_force((eng_simd)lv), 0);
				memset(got, 0xee, bytes);
				ck_assert_int_eq(eng_quantize_row(dt, x, got, n), 0);
				ck_assert_msg(!memcmp(want, got, bytes), "%s at %s, rep %d",
					      eng_type_traits_get(dt)->name,
					      eng_simd_name((eng_simd)lv), rep);
			}
		}
	}
	free(x);
	free(want);
	free(got);
}
END_TEST

/* ---- scalar dot products vs dequantize-then-multiply -------------------- */

/* The references sum integers exactly, so they differ from the double dot
 * of dequantized values only by float rounding of per-block terms. */
#define REF_DOT_REL_TOL 1e-5
/* Q8_1 carries s = d * sum(q) as a half computed from the unrounded d:
 * m * s differs from m * sum(d16 * q) by up to about 2^-10 of
 * |m| (|s| + d16 |sum q|) per block (ggml's format, not our rounding). */
#define Q8_1_S_REL_ERR 0x1p-10

static double q8_1_slack(eng_type t, const void *w, const void *a, int64_t n)
{
	if (t != ENG_TYPE_Q4_1 && t != ENG_TYPE_Q5_1)
		return 0;
	const eng_type_traits *tr = eng_type_traits_get(t);
	const eng_block_q8_1 *y = a;
	double slack = 0;
	for (int64_t b = 0; b < n / 32; b++) {
		const eng_block_q4_1 *h = (const void *)((const char *)w + b * tr->bytes);
		int sum = 0;
		for (int i = 0; i < 32; i++)
			sum += y[b].qs[i];
		slack += fabs(eng_f16_to_f32(h->m)) *
			 (fabs(eng_f16_to_f32(y[b].s)) +
			  eng_f16_to_f32(y[b].d) * abs(sum)) * Q8_1_S_REL_ERR;
	}
	return slack;
}

START_TEST(test_ref_dot_vs_dequant)
{
	eng_type t = tu_dot_types[_i];
	const eng_type_traits *tr = eng_type_traits_get(t);
	const eng_type_traits *dtr = eng_type_traits_get(tr->dot_type);
	const int64_t n = tr->blck == 256 ? 1024 : 640;
	size_t wb, ab;
	ck_assert_int_eq(eng_row_bytes(t, n, &wb), 0);
	ck_assert_int_eq(eng_row_bytes(tr->dot_type, n, &ab), 0);
	void *w = malloc(wb), *a = malloc(ab);
	float *x = malloc(n * 4), *wf = malloc(n * 4), *af = malloc(n * 4);
	tu_seed(100 + _i);
	for (int rep = 0; rep < 20; rep++) {
		tu_weights(t, w, n);
		tu_floats(x, n, 2.0f);
		ck_assert_int_eq(eng_quantize_row(tr->dot_type, x, a, n), 0);
		ck_assert_int_eq(eng_dequant_row_ref(t, w, wf, n), 0);
		ck_assert_int_eq(eng_dequant_row_ref(tr->dot_type, a, af, n), 0);
		double want = 0, mag = 0;
		for (int64_t i = 0; i < n; i++) {
			want += (double)wf[i] * af[i];
			mag += fabs((double)wf[i] * af[i]);
		}
		float got[4];
		double slack = q8_1_slack(t, w, a, n);
		eng_vec_dot_get(t, ENG_SIMD_SCALAR)(n, w, a, 0, got, 1, 3);
		for (int k = 0; k < 3; k++)
			ck_assert_msg(fabs(got[k] - want) <= REF_DOT_REL_TOL * mag + slack + 1e-30,
				      "%s x %s: got %.9g want %.9g (mag %g)", tr->name,
				      dtr->name, got[k], want, mag);
	}
	free(w);
	free(a);
	free(x);
	free(wf);
	free(af);
}
END_TEST

/* Repacking q4_0/q5_0 rows as q8_0 keeps every value, at every level. */
START_TEST(test_repack_q8_0_exact)
{
	static const eng_type ts[] = { ENG_TYPE_Q4_0, ENG_TYPE_Q5_0 };
	const int64_t n = 640;
	float want[640], got[640];
	uint8_t src[640 / 32 * 22], dst[640 / 32 * 34];
	tu_seed(55);
	for (size_t i = 0; i < 2; i++) {
		tu_weights(ts[i], src, n);
		ck_assert_int_eq(eng_dequant_row_ref(ts[i], src, want, n), 0);
		for (int lv = 0; lv <= (int)eng_simd_supported(); lv++) {
			eng_repack_fn f = eng_repack_q8_0_get(ts[i], (eng_simd)lv);
			ck_assert_ptr_nonnull(f);
			memset(dst, 0, sizeof dst);
			f(src, dst, n);
			ck_assert_int_eq(eng_dequant_row_ref(ENG_TYPE_Q8_0, dst, got, n), 0);
			ck_assert_int_eq(memcmp(want, got, sizeof want), 0);
		}
	}
	ck_assert_ptr_null(eng_repack_q8_0_get(ENG_TYPE_Q4_K, ENG_SIMD_AVX512));
	ck_assert_ptr_null(eng_repack_q8_0_get(ENG_TYPE_Q8_0, ENG_SIMD_SCALAR));
}
END_TEST

START_TEST(test_bad_args)
{
	float y[64];
	uint8_t blk[64] = { 0 };
	ck_assert_int_eq(eng_dequant_row_ref(ENG_TYPE_Q8_0, blk, y, 31), ENG_EINVAL);
	ck_assert_int_eq(eng_dequant_row_ref(ENG_TYPE_Q8_0, NULL, y, 32), ENG_EINVAL);
	ck_assert_int_eq(eng_dequant_row_ref(ENG_TYPE_Q8_0, blk, NULL, 32), ENG_EINVAL);
	ck_assert_int_eq(eng_dequant_row_ref((eng_type)17, blk, y, 32), ENG_EINVAL);
	ck_assert_int_eq(eng_quantize_row(ENG_TYPE_Q4_0, y, blk, 32), ENG_EINVAL);
	ck_assert_int_eq(eng_quantize_row(ENG_TYPE_Q8_0, y, blk, 33), ENG_EINVAL);
	ck_assert_int_eq(eng_quantize_row(ENG_TYPE_Q8_K, y, blk, 0), ENG_EINVAL);
	ck_assert_ptr_null(eng_vec_dot_get(ENG_TYPE_Q8_K, ENG_SIMD_SCALAR));
	ck_assert_ptr_null(eng_vec_dot_get(ENG_TYPE_Q8_1, ENG_SIMD_AVX512));
	ck_assert_ptr_nonnull(eng_vec_dot_get(ENG_TYPE_Q3_K, ENG_SIMD_AVX512));
	ck_assert_str_eq(eng_simd_name(ENG_SIMD_AVX2), "avx2");
	ck_assert_int_eq(eng_simd_force((eng_simd)7), ENG_ERANGE);
}
END_TEST

static Suite *quant_suite(void)
{
	Suite *s = suite_create("quant");
	TCase *tc = tcase_create("formats");
	tcase_add_loop_test(tc, test_dequant_golden, 0,
			    sizeof fixture_names / sizeof fixture_names[0]);
	tcase_add_test(tc, test_traits_and_sizes);
	tcase_add_test(tc, test_f16_roundtrip_all);
	tcase_add_test(tc, test_f16_rounding);
	tcase_add_test(tc, test_q8_0_roundtrip);
	tcase_add_test(tc, test_q8_1_roundtrip);
	tcase_add_test(tc, test_q8_K_roundtrip);
	tcase_add_test(tc, test_quantize_levels_match_ref);
	tcase_add_loop_test(tc, test_ref_dot_vs_dequant, 0, TU_N_DOT_TYPES);
	tcase_add_test(tc, test_repack_q8_0_exact);
	tcase_add_test(tc, test_bad_args);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(quant_suite());
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
