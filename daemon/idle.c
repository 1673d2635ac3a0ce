/* idle.c - idle_trim seconds after the last work that read or wrote much
 * of the store, with the engine free, engramd gives back the store's
 * pages it mapped (ed_store_trim: the page cache keeps them) and the free
 * pages of its heap (malloc_trim), on the thread pool.
 *
 * Questions on a 1.17M-token session leave 860 MB of the LMDB map in
 * engramd's RSS: the next question reads most of them again, so they stay
 * while questions come (a first question after an idle stretch pays ~40
 * ms to map them again), and an idle daemon does not hold them.  A fork
 * of that session writes 375 MB of summaries, whose pages LMDB builds in
 * the heap and frees at its commit: the allocator keeps them until asked.
 * A prefill trims the map for itself as it goes.
 *
 * Invariants:
 *  - Work ends with ed_idle_touch: the engine let go (every question and
 *    prefill chunk), a fork, a delete, a gc.  T.touches counts them, T.at
 *    is the last one's time (ed_now_s), under T.mu (any thread).
 *  - A trim runs once T.touches has moved since the last trim, T.at is
 *    idle_trim seconds old and the engine is neither held nor waited
 *    for: once per idle stretch, nothing before the first work (the
 *    warm's pages stay for the first question).
 *  - I is the loop thread's but map_kb, heap_kb and ms, which the work
 *    writes and its done callback reads after it (uv's order).  At most one trim is
 *    queued (I.busy).  The timer is unreferenced: it keeps no loop alive,
 *    and the loop does not end before queued work does.
 */
#include "config.h"

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <uv.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

#include "engramd.h"

/* How often the loop looks (ms). */
#define IDLE_TICK_MS 1000

static struct {
	pthread_mutex_t mu;
	uint64_t touches;
	double at;
} T = { PTHREAD_MUTEX_INITIALIZER, 0, 0 };

static struct {
	uv_timer_t timer;
	uv_work_t work;
	double after;		/* idle_trim, seconds */
	uint64_t touches;	/* T.touches at the last trim */
	int busy;		/* a trim is queued */
	long map_kb, heap_kb;	/* RssFile and RssAnon given back */
	double ms;
} I;

void ed_idle_touch(void)
{
	pthread_mutex_lock(&T.mu);
	T.touches++;
	T.at = ed_now_s();
	pthread_mutex_unlock(&T.mu);
}

/* RssFile and RssAnon, KiB. */
static void rss_kb(long *file, long *anon)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	*file = *anon = 0;
	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "RssFile: %ld", file) != 1)
			(void)sscanf(line, "RssAnon: %ld", anon);
	if (f)
		fclose(f);
}

static void trim_work(uv_work_t *w)
{
	(void)w;
	double t0 = ed_now_s();
	long f0, a0, f1, a1;
	rss_kb(&f0, &a0);
	ed_store_trim();
#ifdef __GLIBC__
	malloc_trim(0);
#endif
	rss_kb(&f1, &a1);
	I.map_kb = f0 - f1;
	I.heap_kb = a0 - a1;
	I.ms = (ed_now_s() - t0) * 1e3;
}

static void trim_done(uv_work_t *w, int status)
{
	(void)w;
	I.busy = 0;
	if (status == UV_ECANCELED)
		return;
	ed_log(ED_LOG_INFO, "idle for %.0f s: gave back %.1f MiB of the "
	    "store's pages and %.1f MiB of the heap in %.0f ms", I.after,
	    I.map_kb / 1024.0, I.heap_kb / 1024.0, I.ms);
}

static void on_tick(uv_timer_t *t)
{
	pthread_mutex_lock(&T.mu);
	uint64_t touches = T.touches;
	double at = T.at;
	pthread_mutex_unlock(&T.mu);
	if (I.busy || touches == I.touches || ed_now_s() - at < I.after ||
	    ed_engine_busy())
		return;
	I.touches = touches;
	I.busy = 1;
	if (uv_queue_work(t->loop, &I.work, trim_work, trim_done) < 0) {
		I.busy = 0;
		ed_log(ED_LOG_WARN, "idle: cannot queue the trim");
	}
}

void ed_idle_start(uv_loop_t *loop, const ed_settings *s)
{
	if (!s->idle_trim)
		return;
	I.after = s->idle_trim;
	uv_timer_init(loop, &I.timer);
	uv_unref((uv_handle_t *)&I.timer);
	uv_timer_start(&I.timer, on_tick, IDLE_TICK_MS, IDLE_TICK_MS);
}
