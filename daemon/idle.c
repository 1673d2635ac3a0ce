/* idle.c - once engramd has been idle for idle_trim seconds, the store's
 * pages it mapped go back (ed_store_trim, on the thread pool; the page
 * cache keeps them).  Questions on a 1.17M-token session leave 860 MB of
 * the LMDB map in engramd's RSS: the next question reads most of them
 * again, so they stay while questions come (a first question after an
 * idle stretch pays ~40 ms to map them again), and an idle daemon does
 * not hold them.  A prefill trims for itself as it goes.
 *
 * Invariants:
 *  - Idle: the engine neither held nor waited for (ed_engine_idle), for
 *    idle_trim seconds since it was last let go.  Every question and
 *    every prefill chunk holds it, so that is every reader of many
 *    pages.
 *  - One trim per idle stretch: I.releases is the engine's count at the
 *    last trim, and a trim waits for a release after it.  Nothing before
 *    the engine's first use (the warm's pages stay for the first
 *    question).
 *  - All of I is the loop thread's but kb and ms, which the work writes
 *    and its done callback reads after it (uv's order).  At most one
 *    trim is queued (I.busy).  The timer is unreferenced: it keeps no
 *    loop alive, and the loop does not end before queued work does.
 */
#include "config.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <uv.h>

#include "engramd.h"

/* How often the loop looks, at most (ms). */
#define IDLE_TICK_MS 1000

static struct {
	uv_timer_t timer;
	uv_work_t work;
	double after;		/* idle_trim, seconds */
	uint64_t releases;	/* the engine's, when last trimmed */
	int busy;		/* a trim is queued */
	long kb;		/* RssFile given back, KiB */
	double ms;
} I;

static long rss_file_kb(void)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	long kb = 0;
	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "RssFile: %ld", &kb) == 1)
			break;
	if (f)
		fclose(f);
	return kb;
}

static void trim_work(uv_work_t *w)
{
	(void)w;
	double t0 = ed_now_s();
	long before = rss_file_kb();
	ed_store_trim();
	I.kb = before - rss_file_kb();
	I.ms = (ed_now_s() - t0) * 1e3;
}

static void trim_done(uv_work_t *w, int status)
{
	(void)w;
	I.busy = 0;
	if (status == UV_ECANCELED)
		return;
	ed_log(ED_LOG_INFO, "idle for %.0f s: "
	    "%.1f MiB of the store's pages given back in %.0f ms", I.after,
	    I.kb / 1024.0, I.ms);
}

static void on_tick(uv_timer_t *t)
{
	double since;
	uint64_t releases;
	if (I.busy || !ed_engine_idle(&since, &releases) ||
	    releases == I.releases || ed_now_s() - since < I.after)
		return;
	I.releases = releases;
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
