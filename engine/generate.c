/* generate.c - prompt ids in, streamed tokens out: prefill in steps (on a
 * sparse context the last of at most ENG_SPARSE_FEW tokens), then
 * sample, detokenize and evaluate one token at a time until a stop
 * condition.  Text that may be the start of a stop string is held back
 * until it is known not to be.  API: engine.h.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "eng_internal.h"
#include "engine.h"

void eng_gen_params_init(eng_gen_params *p)
{
	if (!p)
		return;
	memset(p, 0, sizeof *p);
	p->max_tokens = 256;
}

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* Text decoded but not yet handed to the callback. */
struct hold {
	char *p;
	size_t n, cap;
};

static int hold_add(struct hold *h, const char *s, size_t n)
{
	if (n == 0)
		return 0;
	if (h->n + n > h->cap) {
		size_t cap = h->cap ? h->cap * 2 : 256;
		while (cap < h->n + n)
			cap *= 2;
		char *np = realloc(h->p, cap);
		if (!np)
			return ENG_ENOMEM;
		h->p = np;
		h->cap = cap;
	}
	memcpy(h->p + h->n, s, n);
	h->n += n;
	return 0;
}

/* Where the first stop string starts in h, or -1. */
static long find_stop(const struct hold *h, const eng_gen_params *gp)
{
	long best = -1;
	for (int k = 0; k < ENG_GEN_MAX_STOP && gp->stop[k]; k++) {
		size_t sl = strlen(gp->stop[k]);
		if (sl == 0 || sl > h->n)
			continue;
		for (size_t i = 0; i + sl <= h->n; i++)
			if (!memcmp(h->p + i, gp->stop[k], sl)) {
				if (best < 0 || (long)i < best)
					best = (long)i;
				break;
			}
	}
	return best;
}

/* Bytes of h that can be released: all but the longest suffix that is a
 * proper prefix of some stop string. */
static size_t releasable(const struct hold *h, const eng_gen_params *gp)
{
	size_t keep = 0;
	for (int k = 0; k < ENG_GEN_MAX_STOP && gp->stop[k]; k++) {
		size_t sl = strlen(gp->stop[k]);
		for (size_t n = sl > 1 ? sl - 1 : 0; n > keep; n--)
			if (n <= h->n && !memcmp(h->p + h->n - n, gp->stop[k], n)) {
				keep = n;
				break;
			}
	}
	return h->n - keep;
}

static void hold_drop(struct hold *h, size_t n)
{
	memmove(h->p, h->p + n, h->n - n);
	h->n -= n;
}

int eng_generate(eng_fwd *f, eng_kv *kv, eng_sampler *s,
    const eng_vocab *vocab, const int32_t *prompt, uint32_t n_prompt,
    const eng_gen_params *gpp, eng_token_cb on_token, void *ud,
    const atomic_int *cancel, eng_gen_stats *stats)
{
	eng_gen_params gp;
	eng_gen_stats st = { 0 };
	eng_detok *dt = NULL;
	struct hold h = { 0 };
	const float *logits;
	double t0, t1;
	int32_t eos, eot;
	int rc;

	if (!f || !kv || !s || !vocab || !prompt || n_prompt == 0)
		return ENG_EINVAL;
	if (gpp)
		gp = *gpp;
	else
		eng_gen_params_init(&gp);
	eos = eng_vocab_eos(vocab);
	eot = eng_vocab_eot(vocab);
	if ((rc = eng_detok_open(vocab, gp.special, &dt)))
		return rc;
	/* Never NULL: callbacks always get a valid pointer. */
	if (!(h.p = malloc(h.cap = 256))) {
		eng_detok_close(dt);
		return ENG_ENOMEM;
	}

	t0 = now_ms();
	{
		uint32_t last = eng__fwd_last_step(f, kv, n_prompt);
		if ((last < n_prompt && (rc = eng_fwd_eval(f, kv, prompt,
		    n_prompt - last, 0, NULL, cancel))) ||
		    (rc = eng_fwd_eval(f, kv, prompt + n_prompt - last, last,
		    0, &logits, cancel)))
			goto fail;
	}
	for (uint32_t i = 0; i < n_prompt; i++)
		eng_sampler_accept(s, prompt[i]);
	t1 = now_ms();
	st.n_prompt = n_prompt;
	st.prompt_ms = t1 - t0;

	while (st.stop == ENG_STOP_NONE) {
		const char *text;
		size_t len, rel;
		int32_t id;
		long at;

		if (st.n_gen >= gp.max_tokens) {
			st.stop = ENG_STOP_MAX_TOKENS;
			break;
		}
		if ((rc = eng_sampler_sample(s, logits, &id)))
			goto fail;
		eng_sampler_accept(s, id);
		st.n_gen++;
		if (id == eos || id == eot) {
			st.stop = ENG_STOP_EOS;
			break;
		}
		if ((rc = eng_detok_push(dt, id, &text, &len)) ||
		    (rc = hold_add(&h, text, len)))
			goto fail;
		if ((at = find_stop(&h, &gp)) >= 0) {
			h.n = (size_t)at;
			st.stop = ENG_STOP_STRING;
			rel = h.n;
		} else {
			rel = releasable(&h, &gp);
		}
		if (on_token && on_token(ud, id, h.p, rel) &&
		    st.stop == ENG_STOP_NONE)
			st.stop = ENG_STOP_CALLBACK;
		hold_drop(&h, rel);
		if (st.stop != ENG_STOP_NONE)
			break;
		if (kv->n_pos >= kv->n_ctx) {
			st.stop = ENG_STOP_CONTEXT;
			break;
		}
		if (cancel && atomic_load(cancel)) {
			rc = ENG_ECANCELED;
			st.stop = ENG_STOP_CANCEL;
			goto fail;
		}
		if ((rc = eng_fwd_eval(f, kv, &id, 1, 0, &logits, cancel)))
			goto fail;
	}
	/* Whatever is still held goes out, unless a stop string cut it. */
	if (st.stop != ENG_STOP_STRING && st.stop != ENG_STOP_CALLBACK) {
		const char *text;
		size_t len;
		if ((rc = eng_detok_flush(dt, &text, &len)) ||
		    (rc = hold_add(&h, text, len)))
			goto fail;
		if (h.n && on_token)
			on_token(ud, -1, h.p, h.n);
	}
	rc = 0;
fail:
	st.gen_ms = now_ms() - t0 - st.prompt_ms;
	if (rc == ENG_ECANCELED)
		st.stop = ENG_STOP_CANCEL;
	if (st.prompt_ms > 0)
		st.prompt_tps = st.n_prompt * 1e3 / st.prompt_ms;
	if (st.gen_ms > 0)
		st.gen_tps = st.n_gen * 1e3 / st.gen_ms;
	if (stats)
		*stats = st;
	free(h.p);
	eng_detok_close(dt);
	return rc;
}
