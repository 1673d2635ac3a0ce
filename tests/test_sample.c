/* test_sample.c - the sampler: greedy, top-k/top-p/min-p cuts, repetition
 * penalty, temperature, seeds and bad parameters.  Logits are hand-made;
 * draws are counted over many samples with fixed seeds (deterministic, so
 * the bounds can never flake; they are set wide of the expected values).
 */
#include "config.h"

#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"

#define NV 64

static eng_sampler *open_s(float temp, int top_k, float top_p, float min_p,
    float rp, int last_n, uint64_t seed)
{
	eng_sampler_params p;
	eng_sampler *s;

	eng_sampler_params_init(&p);
	p.temperature = temp;
	p.top_k = top_k;
	p.top_p = top_p;
	p.min_p = min_p;
	p.repeat_penalty = rp;
	p.repeat_last_n = last_n;
	p.seed = seed;
	ck_assert_int_eq(eng_sampler_open(&p, NV, &s), 0);
	return s;
}

/* logits: token i has log-probability proportional to -i/4, except a few
 * set by the caller. */
static void ramp(float *l)
{
	for (int i = 0; i < NV; i++)
		l[i] = -0.25f * (float)i;
}

static void counts(eng_sampler *s, const float *l, int n, int *c)
{
	int32_t id;
	memset(c, 0, NV * sizeof *c);
	for (int i = 0; i < n; i++) {
		ck_assert_int_eq(eng_sampler_sample(s, l, &id), 0);
		ck_assert(id >= 0 && id < NV);
		c[id]++;
	}
}

START_TEST(greedy_argmax_and_ties)
{
	float l[NV];
	int32_t id;
	eng_sampler *s = open_s(0, 40, 0.95f, 0.05f, 1, 64, 1);

	ramp(l);
	l[17] = 5;
	ck_assert_int_eq(eng_sampler_sample(s, l, &id), 0);
	ck_assert_int_eq(id, 17);
	l[9] = 5;	/* tie: the lowest id */
	ck_assert_int_eq(eng_sampler_sample(s, l, &id), 0);
	ck_assert_int_eq(id, 9);
	eng_sampler_close(s);
}
END_TEST

START_TEST(top_k_one_is_greedy)
{
	float l[NV];
	int c[NV];
	eng_sampler *s = open_s(2.0f, 1, 1.0f, 0, 1, 0, 3);

	ramp(l);
	l[30] = 0.5f;
	counts(s, l, 200, c);
	ck_assert_int_eq(c[30], 200);
	eng_sampler_close(s);
}
END_TEST

START_TEST(top_k_cuts)
{
	float l[NV];
	int c[NV];
	eng_sampler *s = open_s(1.0f, 3, 1.0f, 0, 1, 0, 5);

	ramp(l);
	counts(s, l, 3000, c);
	for (int i = 3; i < NV; i++)
		ck_assert_int_eq(c[i], 0);
	/* p ~ 1 : e^-0.25 : e^-0.5 = 0.41 : 0.32 : 0.25 */
	ck_assert(c[0] > 1000 && c[0] < 1450);
	ck_assert(c[2] > 600 && c[2] < 950);
	eng_sampler_close(s);
}
END_TEST

START_TEST(top_p_and_min_p_cut)
{
	float l[NV];
	int c[NV];
	eng_sampler *s;

	/* Two tokens hold 0.5 + 0.4; top_p 0.85 keeps exactly those two. */
	for (int i = 0; i < NV; i++)
		l[i] = logf(0.1f / (NV - 2));
	l[4] = logf(0.5f);
	l[7] = logf(0.4f);
	s = open_s(1.0f, 0, 0.85f, 0, 1, 0, 9);
	counts(s, l, 2000, c);
	ck_assert_int_eq(c[4] + c[7], 2000);
	ck_assert(c[4] > 950 && c[4] < 1250);
	eng_sampler_close(s);

	/* min_p 0.5 of p_max 0.5 keeps p >= 0.25: token 4 and 7 again;
	 * min_p 0.9 keeps only token 4. */
	s = open_s(1.0f, 0, 1.0f, 0.5f, 1, 0, 9);
	counts(s, l, 500, c);
	ck_assert_int_eq(c[4] + c[7], 500);
	eng_sampler_close(s);
	s = open_s(1.0f, 0, 1.0f, 0.9f, 1, 0, 9);
	counts(s, l, 200, c);
	ck_assert_int_eq(c[4], 200);
	eng_sampler_close(s);
}
END_TEST

START_TEST(temperature_sharpens)
{
	float l[NV];
	int hot[NV], cold[NV];
	eng_sampler *s;

	ramp(l);
	s = open_s(2.0f, 0, 1.0f, 0, 1, 0, 11);
	counts(s, l, 2000, hot);
	eng_sampler_close(s);
	s = open_s(0.25f, 0, 1.0f, 0, 1, 0, 11);
	counts(s, l, 2000, cold);
	eng_sampler_close(s);
	/* At T 0.25 token 0 has p = 1 - e^-1 ~ 0.63; at T 2 about 0.12. */
	ck_assert(cold[0] > 1100 && cold[0] < 1400);
	ck_assert(hot[0] > 150 && hot[0] < 350);
}
END_TEST

START_TEST(seed_reproducible)
{
	float l[NV];
	int32_t a[100], b[100], c[100];
	eng_sampler *s1 = open_s(1.0f, 20, 0.9f, 0.01f, 1.1f, 16, 42);
	eng_sampler *s2 = open_s(1.0f, 20, 0.9f, 0.01f, 1.1f, 16, 42);
	eng_sampler *s3 = open_s(1.0f, 20, 0.9f, 0.01f, 1.1f, 16, 43);

	ramp(l);
	for (int i = 0; i < 100; i++) {
		ck_assert_int_eq(eng_sampler_sample(s1, l, &a[i]), 0);
		ck_assert_int_eq(eng_sampler_sample(s2, l, &b[i]), 0);
		ck_assert_int_eq(eng_sampler_sample(s3, l, &c[i]), 0);
		eng_sampler_accept(s1, a[i]);
		eng_sampler_accept(s2, b[i]);
		eng_sampler_accept(s3, c[i]);
	}
	ck_assert(memcmp(a, b, sizeof a) == 0);
	ck_assert(memcmp(a, c, sizeof a) != 0);
	/* reset: the same sequence again. */
	eng_sampler_reset(s2);
	for (int i = 0; i < 100; i++) {
		ck_assert_int_eq(eng_sampler_sample(s2, l, &b[i]), 0);
		eng_sampler_accept(s2, b[i]);
	}
	ck_assert(memcmp(a, b, sizeof a) == 0);
	eng_sampler_close(s1);
	eng_sampler_close(s2);
	eng_sampler_close(s3);
}
END_TEST

START_TEST(repeat_penalty_window)
{
	float l[NV];
	int32_t id;
	eng_sampler *s = open_s(0, 0, 1.0f, 0, 2.0f, 2, 0);

	ramp(l);
	l[0] = 2.0f;
	l[1] = 1.5f;
	eng_sampler_accept(s, 0);
	/* 2.0 / 2 = 1.0 < 1.5: token 1 wins. */
	ck_assert_int_eq(eng_sampler_sample(s, l, &id), 0);
	ck_assert_int_eq(id, 1);
	/* Negative logits are multiplied: -0.25 * 2 = -0.5. */
	l[0] = -0.25f;
	l[1] = -0.3f;
	ck_assert_int_eq(eng_sampler_sample(s, l, &id), 0);
	ck_assert_int_eq(id, 1);
	/* Two more tokens push 0 out of the window of 2. */
	eng_sampler_accept(s, 5);
	eng_sampler_accept(s, 6);
	ck_assert_int_eq(eng_sampler_sample(s, l, &id), 0);
	ck_assert_int_eq(id, 0);
	eng_sampler_close(s);
}
END_TEST

START_TEST(bad_params)
{
	eng_sampler_params p;
	eng_sampler *s;
	int32_t id;

	eng_sampler_params_init(&p);
	ck_assert_int_eq(eng_sampler_open(&p, 0, &s), ENG_EINVAL);
	p.repeat_penalty = 0;
	ck_assert_int_eq(eng_sampler_open(&p, NV, &s), ENG_EINVAL);
	eng_sampler_params_init(&p);
	p.top_p = -1;
	ck_assert_int_eq(eng_sampler_open(&p, NV, &s), ENG_EINVAL);
	eng_sampler_params_init(&p);
	p.min_p = 2;
	ck_assert_int_eq(eng_sampler_open(&p, NV, &s), ENG_EINVAL);
	eng_sampler_params_init(&p);
	p.temperature = NAN;
	ck_assert_int_eq(eng_sampler_open(&p, NV, &s), ENG_EINVAL);
	eng_sampler_params_init(&p);
	p.repeat_last_n = -2;
	ck_assert_int_eq(eng_sampler_open(&p, NV, &s), ENG_EINVAL);
	eng_sampler_params_init(&p);
	ck_assert_int_eq(eng_sampler_open(&p, NV, &s), 0);
	ck_assert_int_eq(eng_sampler_sample(s, NULL, &id), ENG_EINVAL);
	eng_sampler_accept(s, -5);	/* ignored by the penalty */
	eng_sampler_accept(s, 1 << 20);
	float l[NV];
	ramp(l);
	ck_assert_int_eq(eng_sampler_sample(s, l, &id), 0);
	eng_sampler_close(s);
	eng_sampler_close(NULL);
}
END_TEST

/* Top-k over a vocabulary large enough that the one-pass selection cuts
 * its kept candidates many times: logits on ten levels (ties everywhere,
 * the k-th best among many equal ones), some -inf, rising and falling
 * runs.  The tokens drawn at a high temperature are exactly the k best
 * by (logit, then lower id): every draw among them, every one of them
 * drawn. */
#define BIG_NV 20000
START_TEST(top_k_large_vocab)
{
	static const int ks[] = { 1, 3, 40, 300, 600 };
	static float l[BIG_NV];
	static int rank_of[BIG_NV], seen[BIG_NV];
	int k = ks[_i];
	uint64_t x = 88172645463325252ull;
	eng_sampler_params p;
	eng_sampler *s;

	for (int i = 0; i < BIG_NV; i++) {
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		l[i] = i % 997 == 0 ? -INFINITY : (float)(x % 10);
		if (i > 15000)
			l[i] = (float)((i / 7) % 11) - 1;	/* runs */
	}
	/* the k best: level by level from the top, lower ids first */
	int n_best = 0;
	for (int i = 0; i < BIG_NV; i++)
		rank_of[i] = -1;
	for (int lv = 10; lv >= -1 && n_best < k; lv--)
		for (int i = 0; i < BIG_NV && n_best < k; i++)
			if (l[i] == (float)lv)
				rank_of[i] = n_best++;
	ck_assert_int_eq(n_best, k);
	eng_sampler_params_init(&p);
	p.temperature = 1e6f;	/* all kept about equally likely */
	p.top_k = k;
	p.top_p = 1.0f;
	p.min_p = 0.0f;
	p.seed = 11;
	ck_assert_int_eq(eng_sampler_open(&p, BIG_NV, &s), 0);
	memset(seen, 0, sizeof seen);
	int draws = k * 20 < 400 ? 400 : k * 20;
	for (int d = 0; d < draws; d++) {
		int32_t id;
		ck_assert_int_eq(eng_sampler_sample(s, l, &id), 0);
		ck_assert_msg(id >= 0 && id < BIG_NV && rank_of[id] >= 0,
			      "k=%d: drew %d (logit %g), not among the %d best", k,
			      id, id >= 0 && id < BIG_NV ? l[id] : 0, k);
		seen[id]++;
	}
	for (int i = 0; i < BIG_NV; i++)
		if (rank_of[i] >= 0)
			ck_assert_msg(seen[i] > 0, "k=%d: %d (rank %d) never drawn",
				      k, i, rank_of[i]);
	eng_sampler_close(s);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("sample");
	TCase *tc = tcase_create("sampler");

	tcase_set_timeout(tc, 120);

	tcase_add_test(tc, greedy_argmax_and_ties);
	tcase_add_test(tc, top_k_one_is_greedy);
	tcase_add_test(tc, top_k_cuts);
	tcase_add_test(tc, top_p_and_min_p_cut);
	tcase_add_test(tc, temperature_sharpens);
	tcase_add_test(tc, seed_reproducible);
	tcase_add_test(tc, repeat_penalty_window);
	tcase_add_test(tc, bad_params);
	tcase_add_loop_test(tc, top_k_large_vocab, 0, 5);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
