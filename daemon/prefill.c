/* prefill.c - a session's context through the model, chunk by chunk, each
 * chunk's KV made durable as soon as it is computed (ed_skv_save), so
 * that a job stopped at any point (cancel, shutdown, kill -9) resumes at
 * the last saved chunk.
 *
 * The context is the session's preamble (BOS and the opening of a user
 * turn, ed_session_preamble) followed by its token stream: KV position
 * i holds stream token i - n_preamble.  Chunks end on multiples of the
 * engine's batch, so a resumed prefill computes exactly the steps an
 * uninterrupted one would, and its blocks have the same checksums.
 *
 * The engine is taken per chunk with ed_engine_acquire_bg(): a question
 * that arrives meanwhile waits for one chunk at most.
 *
 * Checkpoints: every prefill_checkpoint positions, at the last chunk
 * boundary before the end and at the end, the saved tail is also kept as
 * the checkpoint of that prefix.  A job first grows the session by the
 * longest stored stretch of its context past the session's end that ends
 * at a checkpoint (another session's, or its own before it was cut),
 * one checkpoint's stretch per store lock: those positions are "reused",
 * not computed.  The end marks of a job are dropped when the next job on
 * the session saves past them (drop_job_marks).
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"
#include "engramd.h"
#include "memstore.h"
#include "skv.h"

static int pack_fn(ms_store *ms, void *arg)
{
	return ms_summary_pack(ms, *(const int64_t *)arg);
}

static int codes_fn(ms_store *ms, void *arg)
{
	uint64_t n = 0;
	int rc = ms_summary_codes(ms, *(const int64_t *)arg, &n);
	if (n)
		ed_log(ED_LOG_INFO, "session %lld: key codes added to %llu "
		    "block summaries", (long long)*(const int64_t *)arg,
		    (unsigned long long)n);
	return rc;
}

/* Gives summaries stored before key codes their codes (once per session:
 * its questions then rank far blocks by them once it is opened again),
 * then copies the session's summaries into one record (ms_summary_pack),
 * so that a restart reads them in one sequence.  A failure costs only
 * recall or speed: logged, not fatal. */
static void pack_summaries(int64_t id)
{
	char msg[384];
	if (ed_store_write(codes_fn, &id, msg, sizeof(msg)))
		ed_log(ED_LOG_WARN, "session %lld: no key codes: %s",
		    (long long)id, msg);
	if (ed_store_write(pack_fn, &id, msg, sizeof(msg)))
		ed_log(ED_LOG_WARN, "session %lld: summaries not packed: %s",
		    (long long)id, msg);
}

/* Seconds of prefill between two ms_trim calls: a 1M-token prefill's
 * sparse attention reads most of the session's blocks through the map at
 * some point, and each page read stays in engramd's RSS until trimmed
 * (3.8 GB at the end of 1.17M tokens); a trim costs the next chunk a
 * minor fault per page it reads again (milliseconds, against a chunk's
 * second or so). */
#define TRIM_EVERY_S 4.0

static void sparse_params(const ed_settings *s, eng_sparse_params *sp)
{
	sp->top_k = (uint32_t)s->sparse_top_k;
	sp->sink = (uint32_t)s->sparse_sink;
	sp->local = (uint32_t)s->sparse_local;
	sp->prefill_local = (uint32_t)s->sparse_prefill_local;
	sp->prefill_top_k = (uint32_t)s->sparse_prefill_top_k;
	sp->question_top_k = (uint32_t)s->sparse_question_top_k;
	sp->dense_max = (uint32_t)s->sparse_dense_max;
	sp->reach = (uint32_t)s->sparse_reach;
	sp->scan_max = (uint32_t)s->sparse_scan_max;
	sp->shortlist = (uint32_t)s->sparse_shortlist;
	sp->squeeze = (uint32_t)s->sparse_squeeze;
	sp->codes = (uint32_t)s->sparse_codes;
}

int ed_fwd_open(const ed_settings *s, eng_fwd **out, char *err,
    size_t errlen)
{
	eng_fwd_params fp;

	eng_fwd_params_init(&fp);
	fp.n_threads = s->threads;
	sparse_params(s, &fp.sparse);
	return eng_fwd_open(ed_model(), &fp, out, err, errlen);
}

void ed_sparse_fit(const ed_settings *s, const eng_kv *kv,
    eng_sparse_params *sp)
{
	sparse_params(s, sp);
	if (sp->scan_max > ed_skv_scan_max(kv))
		sp->scan_max = ed_skv_scan_max(kv);
	if (sp->shortlist > ed_skv_scan_max(kv))	/* the same bound */
		sp->shortlist = ed_skv_scan_max(kv);
}

void ed_fwd_fit(eng_fwd *f, const ed_settings *s, const eng_kv *kv)
{
	eng_sparse_params sp;

	ed_sparse_fit(s, kv, &sp);
	eng_fwd_set_sparse(f, &sp);
}

int ed_context_read(int64_t sid, const int32_t *pre, size_t n_pre,
    uint64_t a, uint64_t b, int32_t *out)
{
	size_t got = 0;
	uint64_t i = a;
	int rc = 0;

	for (; i < b && i < n_pre; i++)
		*out++ = pre[i];
	if (i < b) {
		ms_store *ms = ed_store_lock();
		rc = ms ? ms_stream_read(ms, sid, i - n_pre, b - i, out, &got) :
		    MS_EIO;
		ed_store_unlock();
		if (!rc && got != b - i)
			rc = MS_ECORRUPT;
	}
	return rc;
}

/* ms_session_adopt's arguments, for ed_store_write. */
struct adopt_arg {
	int64_t id;
	const uint32_t *ctx;
	uint64_t n;
	uint64_t *step;
};

static int adopt_fn(ms_store *ms, void *arg)
{
	struct adopt_arg *a = arg;
	return ms_session_adopt(ms, a->id, a->ctx, a->n, a->step);
}

/* Grows the session by the longest stretch of its context that the store
 * holds with a checkpoint at its end (ms_session_adopt) and reopens *kv on
 * it.  One checkpoint's stretch per store lock, so that questions and
 * other jobs go between: a 1M prefix is ~18 of them; before each, a
 * question on its way to a first token goes first (ed_store_yield; up to
 * ADOPT_YIELD_S, so that questions back to back cannot stop the job).
 * Not finding one, or failing to take it, costs only compute: logged. */
#define ADOPT_YIELD_S 2.0
static int adopt_prefix(ed_prefill *p, const int32_t *pre, size_t n_pre,
    uint64_t total, eng_kv **kv, uint32_t n_batch, char *err, size_t errlen)
{
	int32_t *ctx = malloc((size_t)total * sizeof(*ctx));
	uint64_t got = 0, step = 0;
	int rc = ctx ? ed_context_read(p->session_id, pre, n_pre, 0, total,
	    ctx) : MS_ENOMEM;

	struct adopt_arg a = { p->session_id, (const uint32_t *)ctx, total,
	    &step };
	while (rc == 0 && !atomic_load(&p->cancel)) {
		char msg[384];
		step = 0;
		(void)ed_store_yield(ADOPT_YIELD_S);
		if ((rc = ed_store_write(adopt_fn, &a, msg, sizeof(msg))))
			ed_log(ED_LOG_WARN, "session %lld: stored prefix not "
			    "taken: %s", (long long)p->session_id, msg);
		if (!step)
			break;
		got += step;
		ed_log(ED_LOG_DEBUG, "session %lld: %llu positions taken",
		    (long long)p->session_id, (unsigned long long)got);
		atomic_store(&p->reused, got);
	}
	free(ctx);
	if (!got)
		return 0;
	eng_kv_close(*kv);
	*kv = NULL;
	if ((rc = ed_skv_open(p->session_id, ed_model(), n_batch, kv, err,
	    errlen)) < 0)
		return rc;
	ed_log(ED_LOG_INFO, "session %lld: %llu of %llu positions taken from "
	    "the store, not computed", (long long)p->session_id,
	    (unsigned long long)got, (unsigned long long)total);
	return 0;
}

/* The checkpoints where the previous job on this session ended (at start,
 * and at its last chunk boundary before it) mark nothing once this job
 * has saved past them: unless periodic, they go, or every incremental
 * prefill would leave 7.9 MB behind for good. */
static void drop_job_marks(const ed_prefill *p, uint64_t start, uint32_t nb)
{
	uint64_t ck = (uint64_t)p->set->prefill_checkpoint;
	uint64_t at[2] = { start, start / nb * nb };
	ms_store *ms = ed_store_lock();
	for (int i = 0; ms && i < 2; i++)
		if (at[i] && (!ck || at[i] % ck) && (i == 0 || at[1] != at[0]))
			(void)ms_checkpoint_drop(ms, p->session_id, at[i], NULL);
	ed_store_unlock();
}

void ed_prefill_run(ed_prefill *p)
{
	const eng_model *m = ed_model();
	eng_fwd *f = NULL;
	eng_kv *kv = NULL;
	int32_t *pre = NULL, *tok = NULL;
	size_t n_pre = 0;
	uint64_t stream = 0, total, pos, start;
	uint32_t nb, win;
	char err[512] = "";
	double t0 = ed_now_s(), trimmed = t0;
	int rc;

	p->rc = 0;
	if ((rc = ed_session_preamble(m, &pre, &n_pre)) < 0) {
		snprintf(p->error, sizeof(p->error), "cannot make the "
		    "preamble: %s", eng_strerror(rc));
		goto fail;
	}
	{
		ms_store *ms = ed_store_lock();
		rc = ms ? ms_stream_length(ms, p->session_id, &stream) : MS_EIO;
		ed_store_unlock();
		if (rc) {
			snprintf(p->error, sizeof(p->error), "cannot read the "
			    "stream: %s", ms_strerror(rc));
			goto fail;
		}
	}
	total = n_pre + stream;
	atomic_store(&p->total, total);
	if ((rc = ed_fwd_open(p->set, &f, err, sizeof(err))) < 0 ||
	    (rc = ed_skv_open(p->session_id, m, eng_fwd_n_batch(f), &kv, err,
	    sizeof(err))) < 0) {
		snprintf(p->error, sizeof(p->error), "%s", err);
		goto fail;
	}
	nb = eng_fwd_n_batch(f);
	/* Only a KV ending on a block boundary can grow by stored blocks:
	 * spare an incremental prefill reading and hashing the context. */
	if (p->reuse && eng_kv_length(kv) < total && kv->block_tokens &&
	    eng_kv_length(kv) % kv->block_tokens == 0 &&
	    (rc = adopt_prefix(p, pre, n_pre, total, &kv, nb, err,
	    sizeof(err))) < 0) {
		snprintf(p->error, sizeof(p->error), "%s", err);
		goto fail;
	}
	ed_fwd_fit(f, p->set, kv);	/* a last chunk of 2..64 tokens scans */
	pos = eng_kv_length(kv);
	if (pos > total) {
		snprintf(p->error, sizeof(p->error), "the session's KV (%llu) "
		    "is longer than its context (%llu)",
		    (unsigned long long)pos, (unsigned long long)total);
		rc = MS_ESTATE;
		goto fail;
	}
	atomic_store(&p->done, pos);
	start = pos;
	/* A save needs the ids from the window layers' tail on. */
	win = eng_model_hparams(m)->sliding_window + nb + 64;
	if (!(tok = malloc(((size_t)nb + win) * sizeof(*tok)))) {
		rc = MS_ENOMEM;
		snprintf(p->error, sizeof(p->error), "out of memory");
		goto fail;
	}
	while (pos < total) {
		uint64_t end = (pos / nb + 1) * nb, first;
		if (end > total)
			end = total;
		first = pos > win ? pos - win : 0;
		if ((rc = ed_context_read(p->session_id, pre, n_pre, first, end,
		    tok))) {
			snprintf(p->error, sizeof(p->error), "cannot read the "
			    "stream: %s", ms_strerror(rc));
			goto fail;
		}
		if (ed_engine_acquire_bg(&p->cancel) < 0) {
			rc = ENG_ECANCELED;
			break;
		}
		rc = eng_fwd_eval(f, kv, tok + (pos - first),
		    (uint32_t)(end - pos), 0, NULL, &p->cancel);
		ed_engine_release();
		if (rc == ENG_ECANCELED)
			break;
		if (rc < 0) {
			if (!ed_skv_failure(kv, err, sizeof(err)))
				snprintf(err, sizeof(err), "%s",
				    eng_strerror(rc));
			snprintf(p->error, sizeof(p->error), "forward pass at "
			    "%llu: %s", (unsigned long long)pos, err);
			goto fail;
		}
		uint64_t ck = (uint64_t)p->set->prefill_checkpoint;
		if ((rc = ed_skv_save(kv, tok, first, ck && (end == total ||
		    end / ck != pos / ck || end + nb > total), err,
		    sizeof(err))) < 0) {
			snprintf(p->error, sizeof(p->error), "%s", err);
			goto fail;
		}
		atomic_fetch_add(&p->computed, end - pos);
		if (pos == start && start)
			drop_job_marks(p, start, nb);
		pos = end;
		atomic_store(&p->done, pos);
		p->seconds = ed_now_s() - t0;
		if (ed_now_s() - trimmed >= TRIM_EVERY_S) {
			ed_store_trim();
			trimmed = ed_now_s();
		}
	}
	p->seconds = ed_now_s() - t0;
	p->rc = rc == ENG_ECANCELED || atomic_load(&p->cancel) ? ENG_ECANCELED
	    : 0;
	pack_summaries(p->session_id);
	goto out;
fail:
	p->rc = rc < 0 ? rc : -1;
	p->seconds = ed_now_s() - t0;
out:
	free(tok);
	free(pre);
	eng_kv_close(kv);
	eng_fwd_close(f);
	ed_store_trim();	/* the job's pages, once its views are closed */
}
