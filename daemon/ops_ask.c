/* ops_ask.c - `ask`: a question after a session's stored context, answered
 * in an overlay that leaves the session as it was (unless `keep`); and
 * the chat-template pieces that frame a session (preamble, question).
 *
 * The context is [preamble][stream]; the question adds "\n\n" + question +
 * the template's close of the user turn and opening of the model's, so
 * the whole corpus and the question are one user turn.  The question's
 * text is tokenized without parsing control tokens: a question cannot
 * forge a turn.  `answer_start` (text the model's turn opens with, the
 * answer then continuing it) joins the question's step, tokenized the
 * same way.  Contract: docs/PROTOCOL.md (### ask).
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"
#include "engramd.h"
#include "memstore.h"
#include "skv.h"

/* Blocks listed in `sources`. */
#define ASK_SOURCES 8
/* Bytes of `answer_start` at most: the start of an answer, not a text. */
#define ASK_START_MAX 4096

/* The template around a user turn and a model turn, split at their
 * contents: *pre before the user's, *mid between them (the close of the
 * user turn and the opening of the model's), *post after the model's (its
 * close).  malloc'd; post may be NULL when not wanted. */
static int template_split(const eng_model *m, char **pre, char **mid,
    char **post)
{
	eng_chat_msg msg[2] = { { "user", "\x01" }, { "assistant", "\x02" } };
	char *text = NULL, *a, *b;
	size_t len = 0;
	int rc = eng_chat_apply(m, msg, 2, 0, &text, &len);

	if (rc < 0)
		return rc;
	if (!(a = strchr(text, '\x01')) || !(b = strchr(a, '\x02'))) {
		free(text);
		return ENG_EUNSUP;
	}
	*a = *b = 0;
	*pre = strdup(text);
	*mid = strdup(a + 1);
	if (post)
		*post = strdup(b + 1);
	free(text);
	if (!*pre || !*mid || (post && !*post)) {
		free(*pre);
		free(*mid);
		if (post)
			free(*post);
		return ENG_ENOMEM;
	}
	return 0;
}

int ed_session_preamble(const eng_model *m, int32_t **ids, size_t *n)
{
	char *pre, *mid;
	int rc = template_split(m, &pre, &mid, NULL);

	if (rc < 0)
		return rc;
	rc = eng_tokenize(eng_model_vocab(m), pre, strlen(pre),
	    ENG_TOK_ADD_SPECIAL | ENG_TOK_PARSE_SPECIAL, ids, n);
	free(pre);
	free(mid);
	return rc;
}

int ed_session_turn_end(const eng_model *m, int32_t **ids, size_t *n)
{
	char *pre, *mid, *post;
	int rc = template_split(m, &pre, &mid, &post);

	if (rc < 0)
		return rc;
	rc = eng_tokenize(eng_model_vocab(m), post, strlen(post),
	    ENG_TOK_PARSE_SPECIAL, ids, n);
	free(pre);
	free(mid);
	free(post);
	return rc;
}

/* Appends b[0..nb) to *a (length *na). */
static int ids_cat(int32_t **a, size_t *na, const int32_t *b, size_t nb)
{
	int32_t *v = realloc(*a, (*na + nb + 1) * sizeof(*v));
	if (!v)
		return ENG_ENOMEM;
	memcpy(v + *na, b, nb * sizeof(*v));
	*a = v;
	*na += nb;
	return 0;
}

int ed_session_question(const eng_model *m, const char *q, size_t len,
    int new_turn, int32_t **ids, size_t *n)
{
	const eng_vocab *v = eng_model_vocab(m);
	char *pre = NULL, *post = NULL;
	int32_t *part = NULL;
	size_t np = 0;
	int rc;

	*ids = NULL;
	*n = 0;
	if ((rc = template_split(m, &pre, &post, NULL)) < 0)
		return rc;
	/* After the corpus, in the same turn; after a kept answer, a new
	 * user turn (the template's opening without BOS). */
	if (new_turn)
		rc = eng_tokenize(v, pre, strlen(pre), ENG_TOK_PARSE_SPECIAL,
		    &part, &np);
	else
		rc = eng_tokenize(v, "\n\n", 2, 0, &part, &np);
	if (rc < 0 || (rc = ids_cat(ids, n, part, np)) < 0)
		goto out;
	free(part);
	part = NULL;
	if ((rc = eng_tokenize(v, q, len, 0, &part, &np)) < 0 ||
	    (rc = ids_cat(ids, n, part, np)) < 0)
		goto out;
	free(part);
	part = NULL;
	if ((rc = eng_tokenize(v, post, strlen(post), ENG_TOK_PARSE_SPECIAL,
	    &part, &np)) < 0 || (rc = ids_cat(ids, n, part, np)) < 0)
		goto out;
out:
	free(part);
	free(pre);
	free(post);
	if (rc < 0) {
		free(*ids);
		*ids = NULL;
		*n = 0;
	}
	return rc;
}

/* ------------------------------------------------------------------ */

struct ask {
	ed_req *r;
	int64_t sid;
	int32_t *pre;		/* the session's preamble (n_pre ids) */
	size_t n_pre;
	uint64_t ctx_end;	/* stream positions the stored context covers */
	int sources;
	eng_fwd *f;
	double t0, ttft_ms;
	uint32_t n_tok;
	int32_t *gen;		/* ids generated, for keep */
	size_t n_gen, cap_gen;
	json_t *blocks;		/* sources, once the first token is out */
	uint64_t n_attended;
	const char *ranked;	/* eng_rank_name of the question's step */
	int urgent;		/* ed_store_urgent(1) not yet paired */
};

/* The question is on its way to a first token: jobs that yield the store
 * to questions (ed_store_yield) wait for it; ask_calm: it is there, or
 * will not be, or waits for the engine, not the store. */
static void ask_urgent(struct ask *a)
{
	if (!a->urgent) {
		ed_store_urgent(1);
		a->urgent = 1;
	}
}

static void ask_calm(struct ask *a)
{
	if (a->urgent) {
		ed_store_urgent(0);
		a->urgent = 0;
	}
}

/* The blocks the question's last token attended, mapped to their
 * documents. */
static json_t *sources_json(struct ask *a)
{
	eng_attn_block blk[ASK_SOURCES + 2];
	uint32_t nb = 0;
	json_t *arr = json_array();

	/* Blocks of the question itself are not sources: ask for a few more
	 * and keep those inside the stored context. */
	if (eng_fwd_attended(a->f, blk, ASK_SOURCES + 2, &nb,
	    &a->n_attended) < 0)
		return arr;
	ms_store *ms = ed_store_lock();
	for (uint32_t i = 0; i < nb && ms &&
	    json_array_size(arr) < ASK_SOURCES; i++) {
		uint64_t s0 = blk[i].pos0, s1 = blk[i].pos0 + blk[i].n;
		uint64_t a0 = s0 > a->n_pre ? s0 - a->n_pre : 0;
		uint64_t a1 = s1 > a->n_pre ? s1 - a->n_pre : 0;
		if (a0 >= a->ctx_end && a->ctx_end)
			continue;
		if (a1 > a->ctx_end)
			a1 = a->ctx_end;
		json_t *o = json_pack("{s:I,s:I,s:f}", "tok_start",
		    (json_int_t)a0, "tok_end", (json_int_t)a1, "weight",
		    (double)blk[i].weight);
		ms_span sa, sb;
		ms_document d;
		/* The first mapped position of the block names the document;
		 * its last one (same document) ends the line range. */
		if (a1 > a0 && ms_span_lookup(ms, a->sid, a0, &sa) == 0 &&
		    ms_document_get(ms, sa.document_id, &d) == 0) {
			int64_t le = sa.line_end;
			if (ms_span_lookup(ms, a->sid, a1 - 1, &sb) == 0 &&
			    sb.document_id == sa.document_id &&
			    sb.line_end > le)
				le = sb.line_end;
			json_object_set_new(o, "path", ed_json_path(d.path));
			json_object_set_new(o, "line_start",
			    json_integer(sa.line_start));
			json_object_set_new(o, "line_end", json_integer(le));
			json_object_set_new(o, "page", json_integer(sa.page));
		}
		json_array_append_new(arr, o);
	}
	ed_store_unlock();
	return arr;
}

/* The question is read and the first token chosen: its time, and the
 * blocks its last token attended.  Once per question: from the first
 * token's callback, or after an answer that had none (its first token
 * ended the turn, or max_tokens 0: sources only). */
static void ask_first(struct ask *a)
{
	a->ttft_ms = ed_now_s() * 1e3 - a->t0;
	a->blocks = sources_json(a);
	a->ranked = eng_rank_name(eng_fwd_ranked(a->f));
	if (a->sources)
		ed_req_emit(a->r, "sources", json_pack("{s:I,s:s,s:O}",
		    "n_attended", (json_int_t)a->n_attended,
		    "ranked", a->ranked, "blocks", a->blocks));
	eng_fwd_record(a->f, 0);
	ask_calm(a);
}

static int ask_token(void *ud, int32_t id, const char *text, size_t len)
{
	struct ask *a = ud;

	if (!a->n_tok++)
		ask_first(a);
	if (id >= 0) {
		if (a->n_gen == a->cap_gen) {
			size_t cap = a->cap_gen ? a->cap_gen * 2 : 256;
			int32_t *g = realloc(a->gen, cap * sizeof(*g));
			if (!g)
				return 1;
			a->gen = g;
			a->cap_gen = cap;
		}
		a->gen[a->n_gen++] = id;
	}
	ed_gen_emit_token(a->r, id, text, len);
	return 0;
}

/* 1 when the stream ends with the close of a model turn (a kept answer):
 * the next question opens a new user turn. */
static int after_turn(const eng_model *m, int64_t sid, uint64_t stream)
{
	int32_t *end = NULL, tail[16];
	size_t ne = 0, got = 0;
	int yes = 0;

	if (ed_session_turn_end(m, &end, &ne) < 0 || ne == 0 || ne > 16 ||
	    stream < ne)
		goto out;
	ms_store *ms = ed_store_lock();
	if (ms && ms_stream_read(ms, sid, stream - ne, ne, tail, &got) == 0 &&
	    got == ne)
		yes = memcmp(tail, end, ne * sizeof(*end)) == 0;
	ed_store_unlock();
out:
	free(end);
	return yes;
}

/* `answer_start`: 0 when absent; its text in *s (len *n, borrowed from
 * r->msg), or -1 after failing r. */
static int ask_start_arg(ed_req *r, const char **s, size_t *n)
{
	json_t *v = json_object_get(r->msg, "answer_start");

	*s = NULL;
	*n = 0;
	if (!v)
		return 0;
	if (!json_is_string(v)) {
		ed_req_fail(r, ED_ERR_INVALID_ARGUMENT, "'answer_start' must "
		    "be a string");
		return -1;
	}
	if (json_string_length(v) > ASK_START_MAX) {
		ed_req_fail(r, ED_ERR_INVALID_ARGUMENT, "'answer_start' is "
		    "longer than %d bytes", ASK_START_MAX);
		return -1;
	}
	*s = json_string_value(v);
	*n = json_string_length(v);
	return 0;
}

/* The question's tokens (*q, *nq) followed by those of start[0..n). */
static int ask_start_cat(const eng_model *m, const char *start, size_t n,
    int32_t **q, size_t *nq)
{
	int32_t *ids = NULL;
	size_t ni = 0;
	int rc;

	if (!n)
		return 0;
	if ((rc = eng_tokenize(eng_model_vocab(m), start, n, 0, &ids,
	    &ni)) >= 0)
		rc = ids_cat(q, nq, ids, ni);
	free(ids);
	return rc;
}

/* Session, its lengths and the question (the answer's start after it);
 * 0, or -1 after failing r. */
static int ask_prepare(ed_req *r, const char *name, struct ask *a,
    const char *start, size_t n_start, uint64_t *stream,
    uint64_t *prefilled, int32_t **q, size_t *nq)
{
	const eng_model *m = ed_model();
	ms_session_info si;
	int rc;

	ms_store *ms = ed_store_lock();
	rc = ms ? ms_session_get(ms, name, &si) : MS_EIO;
	if (rc == 0)
		rc = ms_stream_length(ms, si.id, stream);
	if (rc < 0)
		ed_req_fail(r, rc == MS_ENOTFOUND ? ED_ERR_NOT_FOUND :
		    ED_ERR_INTERNAL, "%s: %s", name, ms ? ms_errmsg(ms) :
		    ms_strerror(rc));
	ed_store_unlock();
	if (rc < 0)
		return -1;
	a->sid = si.id;
	*prefilled = si.n_tokens;
	a->ctx_end = 0;
	if ((rc = ed_session_preamble(m, &a->pre, &a->n_pre)) < 0 ||
	    (rc = ed_session_question(m, (const char *)r->input, r->input_len,
	    after_turn(m, a->sid, *stream), q, nq)) < 0 ||
	    (rc = ask_start_cat(m, start, n_start, q, nq)) < 0) {
		ed_req_fail(r, ED_ERR_INVALID_ARGUMENT, "cannot frame the "
		    "question: %s", eng_strerror(rc));
		return -1;
	}
	a->ctx_end = *prefilled > a->n_pre ? *prefilled - a->n_pre : 0;
	if (a->ctx_end > *stream)
		a->ctx_end = *stream;
	if (*prefilled == 0) {
		ed_req_fail(r, ED_ERR_INVALID_ARGUMENT, "session %s is not "
		    "prefilled (0 of %llu tokens): run `engramctl prefill %s`",
		    name, (unsigned long long)(*stream + a->n_pre), name);
		return -1;
	}
	return 0;
}

/* keep: the question, the answer and the end of the turn join the
 * session: computed, saved, and appended to its stream. */
static int ask_keep(struct ask *a, eng_kv *kv, const int32_t *q, size_t nq,
    char *err, size_t errlen)
{
	const eng_model *m = ed_model();
	uint64_t base = ed_skv_stored(kv);
	int32_t *all = NULL, *end = NULL;
	size_t n = 0, nend = 0;
	int rc;

	/* The last sampled token was never run; then the turn's close. */
	if ((rc = ed_session_turn_end(m, &end, &nend)) < 0 ||
	    (rc = ids_cat(&all, &n, q, nq)) < 0 ||
	    (rc = ids_cat(&all, &n, a->gen, a->n_gen)) < 0 ||
	    (rc = ids_cat(&all, &n, end, nend)) < 0)
		goto out;
	uint64_t have = eng_kv_length(kv) - base;
	if (have < n && (rc = eng_fwd_eval(a->f, kv, all + have,
	    (uint32_t)(n - have), 0, NULL, NULL)) < 0)
		goto out;
	if (eng_kv_length(kv) != base + n) {
		rc = ENG_ERANGE;
		goto out;
	}
	/* Tokens before base (for the window tail) come from the stream. */
	{
		uint32_t back = eng_model_hparams(m)->sliding_window + 64;
		uint64_t first = base > back ? base - back : 0;
		int32_t *ctx = malloc((base - first + n + 1) * sizeof(*ctx));
		if (!ctx) {
			rc = ENG_ENOMEM;
			goto out;
		}
		rc = ed_context_read(a->sid, a->pre, a->n_pre, first, base, ctx);
		if (rc >= 0) {
			memcpy(ctx + (base - first), all, n * sizeof(*ctx));
			rc = ed_skv_save(kv, ctx, first, 0, err, errlen);
		}
		if (rc >= 0) {
			ms_store *ms = ed_store_lock();
			rc = ms ? ms_stream_append(ms, a->sid, all, n) : MS_EIO;
			ed_store_unlock();
		}
		free(ctx);
	}
out:
	free(all);
	free(end);
	return rc;
}

static void ask_worker(ed_req *r)
{
	const eng_model *m = ed_model();
	const ed_settings *set = ed_req_settings(r);
	const char *name = json_string_value(json_object_get(r->msg,
	    "session"));
	struct ask a = { .r = r, .t0 = ed_now_s() * 1e3 };
	ed_gen_args ga;
	uint64_t stream = 0, prefilled = 0;
	int32_t *q = NULL;
	size_t nq = 0, n_start;
	const char *start;
	eng_kv *kv = NULL;
	eng_sampler *s = NULL;
	eng_gen_stats st;
	char err[512] = "";
	int keep, rc;

	memset(&ga, 0, sizeof(ga));
	if (ed_gen_args_parse(r, &ga, 0.0, 0) < 0 ||
	    (a.sources = ed_req_arg_bool(r, "sources", 0)) < 0 ||
	    (keep = ed_req_arg_bool(r, "keep", 0)) < 0 ||
	    ask_start_arg(r, &start, &n_start) < 0)
		return;
	if (keep && ga.gp.max_tokens == 0) {
		ed_req_fail(r, ED_ERR_INVALID_ARGUMENT, "'keep' needs an "
		    "answer: max_tokens 0 asks for sources only");
		return;
	}
	ask_urgent(&a);
	if (ask_prepare(r, name, &a, start, n_start, &stream, &prefilled, &q,
	    &nq) < 0)
		goto out;
	{
		ms_store *ms = ed_store_lock();
		json_t *au = json_pack("{s:s%,s:b,s:f,s:I}", "question",
		    (const char *)r->input, r->input_len > 4000 ? 4000 :
		    r->input_len, "keep", keep, "temperature",
		    (double)ga.sp.temperature, "seed",
		    (json_int_t)ga.sp.seed);
		if (au && start)
			json_object_set_new(au, "answer_start",
			    json_stringn(start, n_start));
		if (ms)
			ed_audit(ms, "ask", name, au);
		json_decref(au);
		ed_store_unlock();
	}
	/* Queued for the engine, the question waits for no store. */
	ask_calm(&a);
	if (ed_engine_acquire(r) < 0) {
		ed_req_fail(r, ED_ERR_CANCELLED, "cancelled while queued");
		goto out;
	}
	ask_urgent(&a);
	ed_warm_wait(a.sid);	/* what it reads, this open takes */
	if ((rc = ed_fwd_open(set, &a.f, err, sizeof(err))) < 0 ||
	    (rc = ed_skv_open(a.sid, m, eng_fwd_n_batch(a.f), &kv, err,
	    sizeof(err))) < 0 ||
	    (rc = eng_sampler_open(&ga.sp, eng_fwd_n_vocab(a.f), &s)) < 0) {
		ed_req_fail(r, ED_ERR_INTERNAL, "cannot open the session: %s",
		    *err ? err : eng_strerror(rc));
		goto release;
	}
	ed_fwd_fit(a.f, set, kv);
	ed_req_emit(r, "prompt", json_pack("{s:I,s:I,s:I,s:I,s:I}", "n_context",
	    (json_int_t)eng_kv_length(kv), "n_question", (json_int_t)nq,
	    "prefilled", (json_int_t)prefilled, "stream_tokens",
	    (json_int_t)stream, "context_tokens",
	    (json_int_t)(stream + a.n_pre)));
	/* The preamble (BOS first) is the attention sink, not a source. */
	eng_fwd_record(a.f, 1);
	eng_fwd_record_skip(a.f, (uint32_t)a.n_pre);
	rc = eng_generate(a.f, kv, s, eng_model_vocab(m), q, (uint32_t)nq,
	    &ga.gp, ask_token, &a, &r->cancelled, &st);
	if (rc == ENG_ECANCELED || ed_req_is_cancelled(r)) {
		ed_req_fail(r, ED_ERR_CANCELLED, "cancelled after %u tokens",
		    st.n_gen);
		goto release;
	}
	if (rc < 0) {
		if (ed_skv_failure(kv, err, sizeof(err)))
			ed_req_fail(r, ED_ERR_INTERNAL, "%s", err);
		else
			ed_req_fail(r, ED_ERR_INTERNAL, "generation failed: %s",
			    eng_strerror(rc));
		goto release;
	}
	if (!a.n_tok)
		ask_first(&a);
	if (keep && (rc = ask_keep(&a, kv, q, nq, err, sizeof(err))) < 0) {
		ed_req_fail(r, ED_ERR_INTERNAL, "cannot keep the turn: %s",
		    *err ? err : rc <= -1100 ? ms_strerror(rc) :
		    eng_strerror(rc));
		goto release;
	}
	r->result = json_pack("{s:f,s:i,s:f,s:f,s:I,s:I,s:s,s:s,s:b}",
	    "ttft_ms", a.ttft_ms, "n_gen", (int)st.n_gen, "gen_ms", st.gen_ms,
	    "gen_tps", st.gen_tps, "n_context", (json_int_t)prefilled,
	    "n_attended", (json_int_t)a.n_attended, "ranked",
	    a.ranked ? a.ranked : "dense", "stop",
	    ed_gen_stop_name(st.stop), "kept", keep);
	if (a.blocks)
		json_object_set(r->result, "blocks", a.blocks);
release:
	eng_sampler_close(s);
	eng_kv_close(kv);
	eng_fwd_close(a.f);
	ed_engine_release();
out:
	ask_calm(&a);
	json_decref(a.blocks);
	free(a.pre);
	free(a.gen);
	free(q);
}

/* Sessions an ask --keep will write, claimed in op_ask and given back
 * when the request finishes; the loop thread's, as the job table is. */
static struct keep_claim {
	ed_req *r;
	int64_t sid;
} *claims;
static size_t n_claims, cap_claims;

static void keep_release(ed_req *r)
{
	for (size_t i = 0; i < n_claims; i++)
		if (claims[i].r == r) {
			claims[i] = claims[--n_claims];
			break;
		}
	if (!n_claims) {
		free(claims);
		claims = NULL;
		cap_claims = 0;
	}
}

static int keep_claim(ed_req *r, int64_t sid)
{
	if (n_claims == cap_claims) {
		size_t cap = cap_claims ? 2 * cap_claims : 8;
		struct keep_claim *c = realloc(claims, cap * sizeof(*c));
		if (!c)
			return -1;
		claims = c;
		cap_claims = cap;
	}
	claims[n_claims++] = (struct keep_claim){ r, sid };
	r->on_finish = keep_release;
	return 0;
}

int ed_ask_keeping(int64_t sid)
{
	for (size_t i = 0; i < n_claims; i++)
		if (claims[i].sid == sid)
			return 1;
	return 0;
}

static void op_ask(ed_req *r)
{
	ed_jobs_recover();
	if (!ed_model_need(r)) {
		ed_req_finish(r);
		return;
	}
	json_t *v = json_object_get(r->msg, "session");
	if (!v || !json_is_string(v) || !ms_name_valid(json_string_value(v))) {
		ed_req_fail(r, v ? ED_ERR_INVALID_ARGUMENT : ED_ERR_MISSING_FIELD,
		    v ? "'session': bad session name" : "missing field 'session'");
		ed_req_finish(r);
	} else if (!r->input) {
		ed_req_fail(r, ED_ERR_MISSING_FIELD, "missing field 'text' (or "
		    "'data'): the question");
		ed_req_finish(r);
	} else if (r->input_len == 0) {
		ed_req_fail(r, ED_ERR_INVALID_ARGUMENT, "the question is empty");
		ed_req_finish(r);
	} else {
		/* keep writes the session: not while a job writes it (the job
		 * table is the loop thread's, so look now). */
		int keep = ed_req_arg_bool(r, "keep", 0), found = 0;
		int64_t job = 0;
		ms_session_info si;
		if (keep > 0) {
			ms_store *ms = ed_store_lock();
			if (ms && ms_session_get(ms, json_string_value(v),
			    &si) == 0) {
				job = ed_job_of_session(si.id);
				found = 1;
			}
			ed_store_unlock();
		}
		if (keep < 0) {
			ed_req_finish(r);
		} else if (job) {
			ed_req_fail(r, ED_ERR_BUSY, "session %s has a running "
			    "job (%lld): keep must wait for it",
			    json_string_value(v), (long long)job);
			ed_req_finish(r);
		} else if (found && keep_claim(r, si.id) < 0) {
			ed_req_fail(r, ED_ERR_INTERNAL, "out of memory");
			ed_req_finish(r);
		} else {
			ed_req_defer(r, ask_worker);	/* not found: it says */
		}
	}
}

const ed_op ed_ops_ask[] = {
	{ "ask", op_ask, NULL },
	{ NULL, NULL, NULL },
};
