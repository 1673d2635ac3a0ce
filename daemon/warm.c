/* warm.c - at start, the session last asked is read before anyone asks
 * (warm_start): its summaries, and its keys' codes where a question
 * ranks by them, their pages in the map faulted in where its pack holds
 * them (read in place), the rest copied into skv's slot.  The first
 * question after a restart then costs what a second one does (at 1.2M
 * tokens 0.1 s less).
 *
 * Invariants:
 *  - One warm per start, on the thread pool, touching no engine state:
 *    ed_skv_open needs the model's shape only, and a cache closed unsaved
 *    leaves what it read to skv's slot.  A question that opens the
 *    session before the warm has chosen it reads for itself; the slot
 *    keeps whichever closes last, the same bits.
 *  - The loop does not end before queued work does, so the store and
 *    model outlive the warm.
 *  - "The session last asked" is the newest `ask` in the audit log whose
 *    session still exists; none, no warm.
 *  - W.id (under W.mu) is the session being read, 0 once done: a question
 *    on it waits (ed_warm_wait) rather than read the same again beside
 *    it, which a question asked at once after a start would.
 */
#include "config.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <uv.h>

#include "engramd.h"
#include "memstore.h"
#include "skv.h"

/* Audit records looked through for the last question. */
#define WARM_AUDIT_MAX 256

static struct {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int64_t id;		/* the session being read; 0: none */
	uv_work_t work;
	const ed_settings *set;
	char name[129];		/* the session warmed, "" if none */
	uint64_t n_tokens;
	int codes;		/* 1 if its codes were read too */
	int rc;
	char err[256];
	double ms;
} W = { .mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER };

static void warm_busy(int64_t id)
{
	pthread_mutex_lock(&W.mu);
	W.id = id;
	pthread_cond_broadcast(&W.cv);
	pthread_mutex_unlock(&W.mu);
}

void ed_warm_wait(int64_t id)
{
	pthread_mutex_lock(&W.mu);
	while (id && W.id == id)
		pthread_cond_wait(&W.cv, &W.mu);
	pthread_mutex_unlock(&W.mu);
}

/* The id of the session of the newest question (0 if none). */
static int64_t last_asked(void)
{
	ms_store *ms = ed_store_lock();
	ms_audit *a = NULL;
	ms_session_info si;
	size_t n = 0;
	int64_t id = 0;

	if (ms && !ms_audit_list(ms, "", WARM_AUDIT_MAX, &a, &n))
		for (size_t i = 0; i < n && !id; i++)
			if (!strcmp(a[i].action, "ask") && a[i].session[0] &&
			    !ms_session_get(ms, a[i].session, &si)) {
				id = si.id;
				snprintf(W.name, sizeof W.name, "%s", si.name);
			}
	ed_store_unlock();
	ms_free(a);
	return id;
}

static void warm_work(uv_work_t *w)
{
	eng_sparse_params sp;
	double t0 = ed_now_s();
	eng_kv *kv = NULL;
	int64_t id;

	(void)w;
	if (!(id = last_asked()))
		return;
	warm_busy(id);
	W.rc = ed_skv_open(id, ed_model(), 1, &kv, W.err, sizeof W.err);
	if (!W.rc) {
		W.n_tokens = eng_kv_length(kv);
		ed_sparse_fit(W.set, kv, &sp);	/* a question's, on kv */
		if (W.n_tokens > sp.dense_max) {
			int codes = W.n_tokens > sp.scan_max && sp.codes &&
			    sp.shortlist;
			W.rc = ed_skv_warm(kv, codes);
			W.codes = codes && !W.rc;
		}
		eng_kv_close(kv);
	}
	warm_busy(0);
	W.ms = (ed_now_s() - t0) * 1e3;
}

static void warm_done(uv_work_t *w, int status)
{
	(void)w;
	if (status == UV_ECANCELED)
		return;
	if (!W.name[0])
		ed_log(ED_LOG_INFO, "warm: no session to read (none asked, or none left)");
	else if (W.rc)
		ed_log(ED_LOG_WARN, "warm: session '%s' not read: %s", W.name,
		    W.err[0] ? W.err : eng_strerror(W.rc));
	else
		ed_log(ED_LOG_INFO, "warm: session '%s' (%llu tokens) read "
		    "in %.0f ms%s", W.name, (unsigned long long)W.n_tokens,
		    W.ms, W.codes ? ", codes too" : "");
}

void ed_warm_start(uv_loop_t *loop, const ed_settings *s)
{
	if (!s->warm_start || !s->sparse_top_k || !ed_model())
		return;
	W.set = s;
	if (uv_queue_work(loop, &W.work, warm_work, warm_done) < 0)
		ed_log(ED_LOG_WARN, "warm: cannot queue the work");
}
