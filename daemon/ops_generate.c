/* ops_generate.c - the `generate` op: a prompt in, tokens streamed out as
 * they are made; and the engine's lock, which `ask` and prefill jobs take
 * too.
 *
 * One forward pass computes at a time: the machine's cores are shared by the
 * engine's compute threads, and two forward passes side by side would each
 * run at half speed while holding twice the memory.  Waiting requests are
 * told their place in the queue; a request cancelled while it waits (its
 * client left) never starts.
 */
#include "config.h"
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "engine.h"
#include "engramd.h"
#include "text.h"

static struct {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int busy;		/* a generation is computing */
	unsigned waiting;	/* requests queued behind it */
} Q = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0 };

/* Waits on Q.cv (Q.mu held) for at most 100 ms, so that cancel flags are
 * looked at ten times a second. */
static void wait_tick(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_nsec += 100 * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	pthread_cond_timedwait(&Q.cv, &Q.mu, &ts);
}

/* Waits for the engine; 0 when it is ours, -1 when cancelled first.
 * Requests wait in order, each told its place. */
int ed_engine_acquire(ed_req *r)
{
	pthread_mutex_lock(&Q.mu);
	if (Q.busy) {
		unsigned pos = ++Q.waiting;
		pthread_mutex_unlock(&Q.mu);
		ed_req_emit(r, "queued", json_pack("{s:i}", "position", (int)pos));
		pthread_mutex_lock(&Q.mu);
		while (Q.busy && !ed_req_is_cancelled(r))
			wait_tick();
		Q.waiting--;
		if (Q.busy) {
			pthread_mutex_unlock(&Q.mu);
			return -1;
		}
	}
	Q.busy = 1;
	pthread_mutex_unlock(&Q.mu);
	return 0;
}

/* Background work (prefill jobs) takes the engine only when no request
 * waits for it, so a question never waits more than one chunk. */
int ed_engine_acquire_bg(const atomic_int *cancel)
{
	pthread_mutex_lock(&Q.mu);
	while ((Q.busy || Q.waiting) && !atomic_load(cancel))
		wait_tick();
	if (Q.busy || Q.waiting) {
		pthread_mutex_unlock(&Q.mu);
		return -1;
	}
	Q.busy = 1;
	pthread_mutex_unlock(&Q.mu);
	return 0;
}

void ed_engine_release(void)
{
	pthread_mutex_lock(&Q.mu);
	Q.busy = 0;
	pthread_cond_broadcast(&Q.cv);
	pthread_mutex_unlock(&Q.mu);
	ed_idle_touch();
}

int ed_engine_busy(void)
{
	pthread_mutex_lock(&Q.mu);
	int busy = Q.busy || Q.waiting;
	pthread_mutex_unlock(&Q.mu);
	return busy;
}

/* Reads a number argument in [lo, hi]; absent gives def.  -1 after failing
 * the request. */
static int arg_num(ed_req *r, const char *key, double lo, double hi, double def,
		   int integer, double *out)
{
	json_t *v = json_object_get(r->msg, key);
	*out = def;
	if (!v)
		return 0;
	if (!json_is_number(v) || (integer && !json_is_integer(v)) ||
	    json_number_value(v) < lo || json_number_value(v) > hi) {
		if (integer)	/* %g would print 1048576 as 1.04858e+06 */
			ed_req_fail(r, ED_ERR_INVALID_ARGUMENT, "'%s' must be an "
			    "integer from %.0f to %.0f", key, lo, hi);
		else
			ed_req_fail(r, ED_ERR_INVALID_ARGUMENT, "'%s' must be a "
			    "number from %g to %g", key, lo, hi);
		return -1;
	}
	*out = json_number_value(v);
	return 0;
}

/* Sampling and generation arguments shared by generate and ask;
 * default_temp is the temperature when none is given, min_tokens the
 * least max_tokens allowed.  -1 after failing the request. */
int ed_gen_args_parse(ed_req *r, ed_gen_args *a, double default_temp,
    uint32_t min_tokens)
{
	double v;
	eng_sampler_params_init(&a->sp);
	eng_gen_params_init(&a->gp);
	if (arg_num(r, "max_tokens", min_tokens, 32768, 256, 1, &v) < 0) return -1;
	a->gp.max_tokens = (uint32_t)v;
	if (arg_num(r, "temperature", 0, 100, default_temp, 0, &v) < 0) return -1;
	a->sp.temperature = (float)v;
	if (arg_num(r, "top_k", 0, 1 << 20, a->sp.top_k, 1, &v) < 0) return -1;
	a->sp.top_k = (int32_t)v;
	if (arg_num(r, "top_p", 0, 1, a->sp.top_p, 0, &v) < 0) return -1;
	a->sp.top_p = (float)v;
	if (arg_num(r, "min_p", 0, 1, a->sp.min_p, 0, &v) < 0) return -1;
	a->sp.min_p = (float)v;
	if (arg_num(r, "repeat_penalty", 0, 10, a->sp.repeat_penalty, 0, &v) < 0) return -1;
	a->sp.repeat_penalty = (float)v;
	if (!(a->sp.repeat_penalty > 0)) {	/* logits are divided by it */
		ed_req_fail(r, ED_ERR_INVALID_ARGUMENT, "'repeat_penalty' must "
		    "be above 0 and at most 10 (1 is off)");
		return -1;
	}
	if (arg_num(r, "seed", 0, 9007199254740991.0, 0, 1, &v) < 0) return -1;
	a->sp.seed = (uint64_t)v;
	json_t *stop = json_object_get(r->msg, "stop");
	if (stop && (!json_is_array(stop) || json_array_size(stop) > ENG_GEN_MAX_STOP - 1)) {
		ed_req_fail(r, ED_ERR_INVALID_ARGUMENT, "'stop' must be an array of at most %d strings",
			    ENG_GEN_MAX_STOP - 1);
		return -1;
	}
	for (size_t i = 0; i < json_array_size(stop); i++) {
		json_t *s = json_array_get(stop, i);
		if (!json_is_string(s) || json_string_length(s) == 0) {
			ed_req_fail(r, ED_ERR_INVALID_ARGUMENT, "stop[%zu] must be a non-empty string", i);
			return -1;
		}
		a->gp.stop[i] = json_string_value(s);	/* borrowed from r->msg */
	}
	return 0;
}

/* The prompt's ids: the text as is, or wrapped in the model's chat
 * template as one user turn. */
static int prompt_ids(ed_req *r, const eng_model *m, int chat, int32_t **ids, size_t *n)
{
	const eng_vocab *v = eng_model_vocab(m);
	char *text = NULL;
	size_t len = 0;
	int rc;

	if (chat) {
		char *content = strndup((const char *)r->input, r->input_len);
		eng_chat_msg msg = { "user", content };
		rc = content ? eng_chat_apply(m, &msg, 1, 1, &text, &len) : ENG_ENOMEM;
		free(content);
		if (rc < 0)
			return rc;
		rc = eng_tokenize(v, text, len, ENG_TOK_ADD_SPECIAL | ENG_TOK_PARSE_SPECIAL, ids, n);
		free(text);
		return rc;
	}
	return eng_tokenize(v, (const char *)r->input, r->input_len, ENG_TOK_ADD_SPECIAL, ids, n);
}

/* Each token becomes a "token" event with its id and the text it
 * released; text that is not UTF-8 on its own (held back by the engine
 * until it is) never reaches here. */
void ed_gen_emit_token(ed_req *r, int32_t id, const char *text, size_t len)
{
	json_t *ev = json_pack("{s:i,s:s%}", "token", id, "text", text ? text : "", len);
	if (!ev)	/* not UTF-8: send the bytes */
		ev = json_pack("{s:i,s:s}", "token", id, "text", "");
	if (id < 0)
		json_object_set_new(ev, "token", json_null());
	ed_req_emit(r, "token", ev);
}

static int on_token(void *ud, int32_t id, const char *text, size_t len)
{
	ed_gen_emit_token(ud, id, text, len);
	return 0;
}

const char *ed_gen_stop_name(eng_stop_reason s)
{
	switch (s) {
	case ENG_STOP_EOS: return "eos";
	case ENG_STOP_STRING: return "stop_string";
	case ENG_STOP_MAX_TOKENS: return "max_tokens";
	case ENG_STOP_CALLBACK: return "callback";
	case ENG_STOP_CANCEL: return "cancelled";
	case ENG_STOP_CONTEXT: return "context_full";
	default: return "none";
	}
}

static void generate_worker(ed_req *r)
{
	const eng_model *m = ed_model();
	const ed_settings *set = ed_req_settings(r);
	ed_gen_args a;
	int32_t *ids = NULL;
	size_t n = 0;
	eng_fwd *f = NULL;
	eng_kv *kv = NULL;
	eng_sampler *s = NULL;
	eng_gen_stats stats;
	char err[256] = "";
	int rc;

	memset(&a, 0, sizeof(a));
	if (ed_gen_args_parse(r, &a, 0.8, 1) < 0 ||
	    (a.chat = ed_req_arg_bool(r, "chat", 0)) < 0)
		return;
	if ((rc = prompt_ids(r, m, a.chat, &ids, &n)) < 0) {
		ed_req_fail(r, ED_ERR_INVALID_ARGUMENT, "cannot make the prompt: %s", eng_strerror(rc));
		return;
	}
	uint32_t n_ctx = eng_model_hparams(m)->n_ctx_train;
	if (n + a.gp.max_tokens > n_ctx) {
		ed_req_fail(r, ED_ERR_INVALID_ARGUMENT,
			    "prompt (%zu tokens) plus max_tokens (%u) is over the model's context of %u",
			    n, a.gp.max_tokens, n_ctx);
		goto out;
	}
	if (ed_engine_acquire(r) < 0) {
		ed_req_fail(r, ED_ERR_CANCELLED, "cancelled while queued");
		goto out;
	}
	ed_req_emit(r, "prompt", json_pack("{s:I}", "n_prompt", (json_int_t)n));
	eng_fwd_params fp;
	eng_fwd_params_init(&fp);
	fp.n_threads = set->threads;
	if ((rc = eng_fwd_open(m, &fp, &f, err, sizeof(err))) < 0 ||
	    (rc = eng_kv_mem_open(m, (uint32_t)(n + a.gp.max_tokens), eng_fwd_n_batch(f), ENG_TYPE_F16, &kv)) < 0 ||
	    (rc = eng_sampler_open(&a.sp, eng_fwd_n_vocab(f), &s)) < 0) {
		ed_req_fail(r, ED_ERR_INTERNAL, "cannot start the engine: %s", *err ? err : eng_strerror(rc));
		goto release;
	}
	rc = eng_generate(f, kv, s, eng_model_vocab(m), ids, (uint32_t)n, &a.gp, on_token, r,
			  &r->cancelled, &stats);
	if (rc == ENG_ECANCELED || ed_req_is_cancelled(r))
		ed_req_fail(r, ED_ERR_CANCELLED, "cancelled after %u tokens", stats.n_gen);
	else if (rc < 0)
		ed_req_fail(r, ED_ERR_INTERNAL, "generation failed: %s", eng_strerror(rc));
	else
		r->result = json_pack("{s:i,s:f,s:f,s:i,s:f,s:f,s:s}",
			"n_prompt", (int)stats.n_prompt, "prompt_ms", stats.prompt_ms,
			"prompt_tps", stats.prompt_tps, "n_gen", (int)stats.n_gen,
			"gen_ms", stats.gen_ms, "gen_tps", stats.gen_tps,
			"stop", ed_gen_stop_name(stats.stop));
release:
	eng_sampler_close(s);
	eng_kv_close(kv);
	eng_fwd_close(f);
	ed_engine_release();
out:
	free(ids);
}

static void op_generate(ed_req *r)
{
	if (!ed_model_need(r)) {
		ed_req_finish(r);
	} else if (!r->input) {
		ed_req_fail(r, ED_ERR_MISSING_FIELD, "missing field 'text' (or 'data'): the prompt");
		ed_req_finish(r);
	} else {
		ed_req_defer(r, generate_worker);
	}
}

const ed_op ed_ops_generate[] = {
	{ "generate", op_generate, NULL },
	{ NULL, NULL, NULL },
};
