/* sample.c - turning logits into a token: repetition penalty, top-k, top-p,
 * min-p, temperature and a seeded draw (xoshiro256**), or greedy argmax.
 *
 * The filters work on a candidate list sorted by logit, so each is a cut of
 * a prefix; with top-k the list is only the k best, found in one pass over
 * the logits (a draw over the default model's 262,144 took 2.5 ms when
 * every logit was listed and selected, 0.35 ms so).  Results depend only
 * on the logits, the history and the seed.
 * API: engine.h.
 */
#include "config.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "eng_internal.h"
#include "engine.h"

struct cand {
	float logit;
	int32_t id;
};

struct eng_sampler {
	eng_sampler_params p;
	uint32_t n_vocab;
	uint64_t rng[4];	/* xoshiro256** state */
	int32_t *hist;		/* ring of the last hist_cap accepted ids */
	uint32_t hist_cap, hist_n, hist_pos;
	struct cand *cands;	/* (n_vocab) */
	float *pen;		/* (n_vocab) penalized logits */
	uint8_t *mark;		/* (n_vocab) zero between calls */
};

void eng_sampler_params_init(eng_sampler_params *p)
{
	if (!p)
		return;
	p->temperature = 0.8f;
	p->top_k = 40;
	p->top_p = 0.95f;
	p->min_p = 0.05f;
	p->repeat_penalty = 1.0f;
	p->repeat_last_n = 64;
	p->seed = 0;
}

/* splitmix64 seeds xoshiro (its authors' recommendation). */
static uint64_t splitmix64(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

static uint64_t xoshiro_next(uint64_t s[4])
{
	uint64_t r = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = rotl(s[3], 45);
	return r;
}

/* Uniform in [0, 1) with 53 bits. */
static double rng_uniform(uint64_t s[4])
{
	return (double)(xoshiro_next(s) >> 11) * (1.0 / 9007199254740992.0);
}

void eng_sampler_reset(eng_sampler *s)
{
	uint64_t x;

	if (!s)
		return;
	x = s->p.seed;
	for (int i = 0; i < 4; i++)
		s->rng[i] = splitmix64(&x);
	s->hist_n = s->hist_pos = 0;
}

int eng_sampler_open(const eng_sampler_params *p, uint32_t n_vocab,
    eng_sampler **out)
{
	eng_sampler *s;

	if (!p || !out || n_vocab == 0 || n_vocab > (1u << 24) ||
	    !(p->top_p >= 0.0f) || !(p->min_p >= 0.0f) || p->min_p > 1.0f ||
	    !(p->repeat_penalty > 0.0f) || p->repeat_last_n < -1 ||
	    isnan(p->temperature))
		return ENG_EINVAL;
	*out = NULL;
	if (!(s = calloc(1, sizeof *s)))
		return ENG_ENOMEM;
	s->p = *p;
	s->n_vocab = n_vocab;
	/* -1 means every accepted token, bounded at the last 65536: a
	 * token counts once however often it appears. */
	s->hist_cap = p->repeat_last_n < 0 ? 65536 :
	    (uint32_t)p->repeat_last_n;
	s->cands = malloc((size_t)n_vocab * sizeof *s->cands);
	s->pen = malloc((size_t)n_vocab * sizeof *s->pen);
	s->mark = calloc(n_vocab, 1);
	s->hist = malloc(((size_t)s->hist_cap + 1) * sizeof *s->hist);
	if (!s->cands || !s->pen || !s->hist || !s->mark) {
		eng_sampler_close(s);
		return ENG_ENOMEM;
	}
	eng_sampler_reset(s);
	*out = s;
	return 0;
}

void eng_sampler_close(eng_sampler *s)
{
	if (!s)
		return;
	free(s->cands);
	free(s->pen);
	free(s->mark);
	free(s->hist);
	free(s);
}

void eng_sampler_accept(eng_sampler *s, int32_t id)
{
	if (!s || s->hist_cap == 0)
		return;
	s->hist[s->hist_pos] = id;
	s->hist_pos = (s->hist_pos + 1) % s->hist_cap;
	if (s->hist_n < s->hist_cap)
		s->hist_n++;
}

static int cand_cmp(const void *a, const void *b)
{
	const struct cand *x = a, *y = b;
	if (x->logit != y->logit)
		return x->logit > y->logit ? -1 : 1;
	return x->id < y->id ? -1 : x->id > y->id;	/* stable on ties */
}

/* llama.cpp's penalty: a positive logit is divided by the penalty, a
 * negative one multiplied; each distinct token of the window once. */
static void apply_penalty(eng_sampler *s)
{
	float rp = s->p.repeat_penalty;

	if (rp == 1.0f || s->hist_n == 0)
		return;
	for (uint32_t i = 0; i < s->hist_n; i++) {
		int32_t id = s->hist[i];
		if (id < 0 || (uint32_t)id >= s->n_vocab || s->mark[id])
			continue;
		s->mark[id] = 1;
		s->pen[id] = s->pen[id] > 0 ? s->pen[id] / rp : s->pen[id] * rp;
	}
	for (uint32_t i = 0; i < s->hist_n; i++)
		if (s->hist[i] >= 0 && (uint32_t)s->hist[i] < s->n_vocab)
			s->mark[s->hist[i]] = 0;
}

/* Moves the k best candidates (by cand_cmp) to the front, in any order:
 * quickselect with a middle pivot. */
static void select_top(struct cand *c, uint32_t n, uint32_t k)
{
	uint32_t lo = 0, hi = n - 1;

	while (lo < hi) {
		struct cand pv = c[lo + (hi - lo) / 2], t;
		uint32_t i = lo, j = hi;
		while (i <= j) {
			while (cand_cmp(&c[i], &pv) < 0)
				i++;
			while (cand_cmp(&c[j], &pv) > 0)
				j--;
			if (i <= j) {
				t = c[i];
				c[i] = c[j];
				c[j] = t;
				i++;
				if (j == 0)
					break;
				j--;
			}
		}
		if (k - 1 <= j)
			hi = j;
		else if (k - 1 >= i)
			lo = i;
		else
			return;
	}
}

/* The k best of the n logits x (by cand_cmp), in any order, into c (room
 * for n), in one pass: a candidate enters only if it beats the k-th best
 * kept so far, and every 2k entries (at least) the kept ones are cut back
 * to the best k.  A logit that does not beat that k-th best loses to k
 * others (a tie goes to the lower id, which came first), so the set is
 * the one select_top over every candidate would give.  Returns how many
 * are kept (k, or fewer if n < k). */
static uint32_t stream_top(struct cand *c, const float *x, uint32_t n,
    uint32_t k)
{
	uint32_t cap = 2 * k < 512 ? 512 : 2 * k, m = 0;
	float kth = 0.0f;	/* the k-th best's logit at the last cut */
	int cut = 0;		/* 1 once the kept ones were cut to k */

	if (cap > n)
		cap = n;
	for (uint32_t i = 0; i < n; i++) {
		if (cut && !(x[i] > kth))
			continue;
		if (m == cap) {
			select_top(c, m, k);
			m = k;
			kth = c[0].logit;
			for (uint32_t j = 1; j < k; j++)
				if (c[j].logit < kth)
					kth = c[j].logit;
			cut = 1;
			if (!(x[i] > kth))
				continue;
		}
		c[m].logit = x[i];
		c[m++].id = (int32_t)i;
	}
	if (m > k) {
		select_top(c, m, k);
		m = k;
	}
	return m;
}

int eng_sampler_sample(eng_sampler *s, const float *logits, int32_t *id)
{
	uint32_t n, k;
	double sum, cum, r;

	if (!s || !logits || !id)
		return ENG_EINVAL;
	/* the logits as they are, or a penalized copy */
	const float *x = logits;
	if (s->p.repeat_penalty != 1.0f && s->hist_n) {
		memcpy(s->pen, logits, (size_t)s->n_vocab * sizeof(float));
		apply_penalty(s);
		x = s->pen;
	}
	if (s->p.temperature <= 0.0f) {
		uint32_t best = 0;
		for (uint32_t i = 1; i < s->n_vocab; i++)
			if (x[i] > x[best])
				best = i;
		*id = (int32_t)best;
		return 0;
	}
	n = s->n_vocab;
	if (s->p.top_k > 0 && (uint32_t)s->p.top_k < n) {
		/* top-k: the k best in one pass, then sort only those */
		n = stream_top(s->cands, x, n, (uint32_t)s->p.top_k);
	} else {
		for (uint32_t i = 0; i < n; i++) {
			s->cands[i].logit = x[i];
			s->cands[i].id = (int32_t)i;
		}
	}
	qsort(s->cands, n, sizeof *s->cands, cand_cmp);
	/* top-p: smallest prefix whose probability reaches top_p. */
	if (s->p.top_p < 1.0f) {
		float mx = s->cands[0].logit;
		sum = 0;
		for (uint32_t i = 0; i < n; i++)
			sum += exp((double)s->cands[i].logit - mx);
		cum = 0;
		for (k = 0; k < n; k++) {
			cum += exp((double)s->cands[k].logit - mx) / sum;
			if (cum >= s->p.top_p) {
				k++;
				break;
			}
		}
		n = k < 1 ? 1 : k;
	}
	/* min-p: keep tokens with p >= min_p * p_max. */
	if (s->p.min_p > 0.0f) {
		float cut = s->cands[0].logit + logf(s->p.min_p);
		for (k = 1; k < n && s->cands[k].logit >= cut; k++)
			;
		n = k;
	}
	/* temperature, then a draw. */
	sum = 0;
	for (uint32_t i = 0; i < n; i++)
		sum += exp(((double)s->cands[i].logit - s->cands[0].logit) /
		    s->p.temperature);
	r = rng_uniform(s->rng) * sum;
	cum = 0;
	for (k = 0; k < n - 1; k++) {
		cum += exp(((double)s->cands[k].logit - s->cands[0].logit) /
		    s->p.temperature);
		if (r < cum)
			break;
	}
	*id = s->cands[k].id;
	return 0;
}
