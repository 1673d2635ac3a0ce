/* test_ms_codec.c - memstore block records: f16 conversion, block keys,
 * encode/decode error bounds per mode on synthetic K/V with outlier
 * channels, record sizes, checksum verification of every byte. */
#include "config.h"
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "ms_internal.h"
#include "ms_synth.h"

START_TEST(test_f16_all_halves)
{
	/* Every finite half converts to a float and back unchanged. */
	for (uint32_t h = 0; h < 65536; h++) {
		if ((h & 0x7c00u) == 0x7c00u && (h & 0x3ffu))
			continue;	/* NaN payloads are not preserved */
		float f = ms_f16_to_f32((uint16_t)h);
		ck_assert_uint_eq(ms_f16_from_f32(f), h);
	}
	ck_assert_uint_eq(ms_f16_from_f32(1.0f), 0x3c00);
	ck_assert_uint_eq(ms_f16_from_f32(65504.0f), 0x7bff);
	ck_assert_uint_eq(ms_f16_from_f32(65520.0f), 0x7c00);	/* rounds to inf */
	ck_assert_uint_eq(ms_f16_from_f32(-2.0f), 0xc000);
	/* 1 + 2^-11 is a tie between 1 and 1 + 2^-10: to even (1). */
	ck_assert_uint_eq(ms_f16_from_f32(1.0f + 0x1p-11f), 0x3c00);
	ck_assert_uint_eq(ms_f16_from_f32(1.0f + 3 * 0x1p-11f), 0x3c02);
	ck_assert_uint_eq(ms_f16_from_f32(0x1p-24f), 0x0001);	/* smallest */
	ck_assert_uint_eq(ms_f16_from_f32(0x1p-26f), 0x0000);
	ck_assert(isnan(ms_f16_to_f32(ms_f16_from_f32(NAN))));
}
END_TEST

START_TEST(test_key_inputs)
{
	uint8_t fp[16] = { 1, 2, 3 }, fp2[16] = { 1, 2, 4 };
	uint32_t tok[4] = { 10, 20, 30, 40 }, tok2[4] = { 10, 20, 30, 41 };
	ms_key a, b, parent = { { 9 } };
	ms_block_key(fp, NULL, tok, 4, 0, &a);
	ms_block_key(fp, NULL, tok, 4, 0, &b);
	ck_assert_mem_eq(a.b, b.b, 16);
	ms_block_key(fp2, NULL, tok, 4, 0, &b);
	ck_assert_int_ne(memcmp(a.b, b.b, 16), 0);
	ms_block_key(fp, &parent, tok, 4, 0, &b);
	ck_assert_int_ne(memcmp(a.b, b.b, 16), 0);
	ms_block_key(fp, NULL, tok2, 4, 0, &b);
	ck_assert_int_ne(memcmp(a.b, b.b, 16), 0);
	ms_block_key(fp, NULL, tok, 3, 0, &b);
	ck_assert_int_ne(memcmp(a.b, b.b, 16), 0);
	ms_block_key(fp, NULL, tok, 4, 64, &b);
	ck_assert_int_ne(memcmp(a.b, b.b, 16), 0);
	/* A zero parent is the same as no parent, by definition. */
	ms_key zero = { { 0 } };
	ms_block_key(fp, &zero, tok, 4, 0, &b);
	ck_assert_mem_eq(a.b, b.b, 16);
}
END_TEST

START_TEST(test_record_sizes)
{
	/* Gemma 3 270M: 3 global layers, 1 KV head, head_dim 256, B = 64. */
	ms_geom g = { 3, 1, 256, 64, MS_MODE_F16 };
	ck_assert_uint_eq(ms_block_record_size(&g, 64),
			  72 + 64 * 4 + 3 * 64 * 256 * 4);
	g.mode = MS_MODE_Q8;
	ck_assert_uint_eq(ms_block_record_size(&g, 64),
			  72 + 64 * 4 + 3 * (256 * 4 + 64 * 256 + 64 * 4 + 64 * 256));
	g.mode = MS_MODE_Q4;
	ck_assert_uint_eq(ms_block_record_size(&g, 64),
			  72 + 64 * 4 + 3 * (256 * 4 + 64 * 128 + 64 * 8 * 4 + 64 * 128));
	ck_assert_uint_eq(ms_block_record_size(&g, 0), 0);
	ck_assert_uint_eq(ms_block_record_size(&g, 70000), 0);
	g.head_dim = 255;
	ck_assert_uint_eq(ms_block_record_size(&g, 64), 0);
	g.head_dim = 256;
	g.mode = (ms_mode)7;
	ck_assert_uint_eq(ms_block_record_size(&g, 64), 0);
}
END_TEST

/* Encodes synthetic K/V, decodes every (layer, head) and checks the error
 * of each element against the bound of its quantization group. */
static void roundtrip(ms_mode mode, uint32_t t, uint32_t d, uint32_t layers,
		      uint32_t heads)
{
	ms_geom g = { layers, heads, d, t, mode };
	size_t sec = (size_t)layers * heads, n = sec * t * d;
	float *k = malloc(n * 4), *v = malloc(n * 4);
	float *dk = malloc((size_t)t * d * 4), *dv = malloc((size_t)t * d * 4);
	uint32_t *tok = malloc(t * 4);
	ck_assert(k && v && dk && dv && tok);
	ms_synth_kv(42 + mode, sec, t, d, k, v);
	for (uint32_t i = 0; i < t; i++)
		tok[i] = i * 7 + 1;
	size_t len = ms_block_record_size(&g, t);
	uint8_t *rec = malloc(len);
	uint8_t fp[16] = { 5 };
	ck_assert_int_eq(ms__block_encode(rec, &g, fp, NULL, 128, tok, t, k, v), 0);
	ms_block b;
	ck_assert_int_eq(ms__block_parse(rec, len, NULL, &b), 0);
	ck_assert_uint_eq(b.n_tokens, t);
	ck_assert_uint_eq(b.position, 128);
	ck_assert_int_eq(b.geom.mode, mode);
	uint32_t tk[4096];
	ms_block_tokens(&b, tk);
	ck_assert_mem_eq(tk, tok, t * 4);
	unsigned levels = mode == MS_MODE_Q8 ? 255 : 15;
	uint32_t vg = mode == MS_MODE_Q4 && d % 32 == 0 ? 32 : d;
	for (uint32_t l = 0; l < layers; l++)
		for (uint32_t h = 0; h < heads; h++) {
			ck_assert_int_eq(ms_block_decode(&b, l, h, dk, dv), 0);
			const float *xk = k + ((size_t)l * heads + h) * t * d;
			const float *xv = v + ((size_t)l * heads + h) * t * d;
			for (uint32_t c = 0; c < d; c++) {
				float mn = xk[c], mx = xk[c];
				for (uint32_t i = 0; i < t; i++) {
					float y = xk[(size_t)i * d + c];
					mn = fminf(mn, y);
					mx = fmaxf(mx, y);
				}
				for (uint32_t i = 0; i < t; i++) {
					size_t e = (size_t)i * d + c;
					float err = fabsf(dk[e] - xk[e]);
					float bound = mode == MS_MODE_F16 ?
						fabsf(xk[e]) * 0x1p-11f + 0x1p-24f :
						/* half a step, plus f16 rounding of
						 * min and scale */
						(mx - mn) / levels * 0.51f +
						fabsf(mn) * 0x1p-10f + 1e-3f;
					ck_assert_msg(err <= bound, "K mode %d err %g > %g",
						      mode, err, bound);
				}
			}
			for (uint32_t i = 0; i < t; i++)
				for (uint32_t j = 0; j < d / vg; j++) {
					const float *x = xv + (size_t)i * d + j * vg;
					float mn = x[0], mx = x[0];
					for (uint32_t c = 0; c < vg; c++) {
						mn = fminf(mn, x[c]);
						mx = fmaxf(mx, x[c]);
					}
					for (uint32_t c = 0; c < vg; c++) {
						size_t e = (size_t)i * d + j * vg + c;
						float err = fabsf(dv[e] - xv[e]);
						float bound = mode == MS_MODE_F16 ?
							fabsf(xv[e]) * 0x1p-11f + 0x1p-24f :
							(mx - mn) / levels * 0.51f +
							fabsf(mn) * 0x1p-10f + 1e-3f;
						ck_assert_msg(err <= bound, "V err %g > %g",
							      err, bound);
					}
				}
		}
	/* Only K or only V. */
	ck_assert_int_eq(ms_block_decode(&b, 0, 0, NULL, dv), 0);
	ck_assert_int_eq(ms_block_decode(&b, layers, 0, dk, dv), MS_EINVAL);
	ck_assert_int_eq(ms_block_decode(&b, 0, heads, dk, dv), MS_EINVAL);
	free(rec);
	free(k);
	free(v);
	free(dk);
	free(dv);
	free(tok);
}

START_TEST(test_roundtrip_modes)
{
	static const ms_mode modes[] = { MS_MODE_F16, MS_MODE_Q8, MS_MODE_Q4 };
	for (size_t m = 0; m < 3; m++) {
		roundtrip(modes[m], 64, 256, 3, 1);	/* Gemma 3 270M */
		roundtrip(modes[m], 1, 256, 1, 1);	/* one token */
		roundtrip(modes[m], 17, 40, 2, 3);	/* D % 32 != 0 */
	}
}
END_TEST

START_TEST(test_checksum_every_byte)
{
	ms_geom g = { 2, 1, 32, 8, MS_MODE_Q4 };
	float k[2 * 8 * 32], v[2 * 8 * 32];
	uint32_t tok[8] = { 1, 2, 3, 4, 5, 6, 7, 8 };
	ms_synth_kv(7, 2, 8, 32, k, v);
	size_t len = ms_block_record_size(&g, 8);
	uint8_t *rec = malloc(len);
	uint8_t fp[16] = { 0 };
	ck_assert_int_eq(ms__block_encode(rec, &g, fp, NULL, 0, tok, 8, k, v), 0);
	ms_block b;
	ck_assert_int_eq(ms__block_parse(rec, len, NULL, &b), 0);
	for (size_t i = 0; i < len; i++) {
		rec[i] ^= 0x10;
		ck_assert_int_eq(ms__block_parse(rec, len, NULL, &b), MS_ECORRUPT);
		rec[i] ^= 0x10;
	}
	ck_assert_int_eq(ms__block_parse(rec, len - 1, NULL, &b), MS_ECORRUPT);
	ck_assert_int_eq(ms__block_parse(rec, 10, NULL, &b), MS_ECORRUPT);
	free(rec);
}
END_TEST

START_TEST(test_bad_values)
{
	ms_geom g = { 1, 1, 4, 2, MS_MODE_Q8 };
	float k[8] = { 0 }, v[8] = { 0 };
	uint32_t tok[2] = { 1, 2 };
	uint8_t rec[512], fp[16] = { 0 };
	k[3] = NAN;
	ck_assert_int_eq(ms__block_encode(rec, &g, fp, NULL, 0, tok, 2, k, v),
			 MS_ERANGE);
	k[3] = 0;
	v[5] = 1e6f;
	ck_assert_int_eq(ms__block_encode(rec, &g, fp, NULL, 0, tok, 2, k, v),
			 MS_ERANGE);
	v[5] = INFINITY;
	ck_assert_int_eq(ms__block_encode(rec, &g, fp, NULL, 0, tok, 2, k, v),
			 MS_ERANGE);
	/* Constant data: zero scale decodes exactly. */
	for (int i = 0; i < 8; i++)
		k[i] = v[i] = -3.5f;
	ck_assert_int_eq(ms__block_encode(rec, &g, fp, NULL, 0, tok, 2, k, v), 0);
	ms_block b;
	ck_assert_int_eq(ms__block_parse(rec, ms_block_record_size(&g, 2), NULL,
					 &b), 0);
	float dk[8], dv[8];
	ck_assert_int_eq(ms_block_decode(&b, 0, 0, dk, dv), 0);
	for (int i = 0; i < 8; i++) {
		ck_assert_float_eq(dk[i], -3.5f);
		ck_assert_float_eq(dv[i], -3.5f);
	}
}
END_TEST

START_TEST(test_errors)
{
	ck_assert_str_eq(ms_errname(MS_ECORRUPT), "MS_ECORRUPT");
	ck_assert_str_eq(ms_strerror(MS_EFULL), "disk budget exhausted");
	ck_assert_str_eq(ms_errname(12345), "MS_EUNKNOWN");
	ck_assert_int_eq(ms_name_valid("abc.DEF_0-9"), 1);
	ck_assert_int_eq(ms_name_valid(".hidden"), 0);
	ck_assert_int_eq(ms_name_valid(""), 0);
	ck_assert_int_eq(ms_name_valid("a/b"), 0);
	ck_assert_int_eq(ms_name_valid("x'; DROP TABLE sessions; --"), 0);
	char longn[130];
	memset(longn, 'a', 129);
	longn[129] = 0;
	ck_assert_int_eq(ms_name_valid(longn), 0);
	longn[128] = 0;
	ck_assert_int_eq(ms_name_valid(longn), 1);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("ms_codec");
	TCase *tc = tcase_create("codec");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_f16_all_halves);
	tcase_add_test(tc, test_key_inputs);
	tcase_add_test(tc, test_record_sizes);
	tcase_add_test(tc, test_roundtrip_modes);
	tcase_add_test(tc, test_checksum_every_byte);
	tcase_add_test(tc, test_bad_values);
	tcase_add_test(tc, test_errors);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
