/* store.c - engramd's memstore: opened once at start under <data dir>/store
 * (recovery runs there, before the socket opens) and closed at stop.
 *
 * memstore is single-threaded per ms_store (memstore.h), and requests run
 * on several workers: every use goes through ed_store_lock() /
 * ed_store_unlock(), one lock.  Hold it for one store call or one short
 * sequence, never across a forward pass.
 *
 * The lock is fair (tickets, served in order): a job that takes it again
 * and again (a prefix adopted stretch by stretch, a prefill's commits)
 * lets a question that waits go first, where a plain mutex would most
 * often hand it straight back to the job.  A question takes the lock
 * about ten times before its first token, though, each behind at most one
 * of the job's holds (a stretch of a 1M adoption: 0.2-0.5 s); so
 * questions on their way to a first token say so (ed_store_urgent), and
 * a job about to hold the lock long waits for them first
 * (ed_store_yield).
 */
#include "config.h"
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include "engramd.h"
#include "memstore.h"

static struct {
	pthread_mutex_t mu;	/* guards the tickets */
	pthread_cond_t turn;	/* serving moved on */
	uint64_t next;		/* the next ticket handed out */
	uint64_t serving;	/* the ticket that holds the lock */
	ms_store *ms;		/* owned; NULL before open and after close */
	int urgent;		/* questions before their first token */
	pthread_cond_t calm;	/* urgent fell to 0 */
} S = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, NULL,
	0, PTHREAD_COND_INITIALIZER };

int ed_store_open(const ed_settings *s, char *err, size_t errlen)
{
	char dir[4096], msg[512] = "";
	ms_settings ms;
	ms_recovery rec;

	snprintf(dir, sizeof(dir), "%s/store", s->data_dir);
	int rc = ed_mkdirs(dir, 0700);
	if (rc < 0) {
		snprintf(err, errlen, "cannot create %s: %s", dir, strerror(-rc));
		return rc;
	}
	ms_settings_init(&ms);
	if (s->disk_budget)
		ms.disk_budget = s->disk_budget;
	rc = ms_open(dir, &ms, &S.ms, msg, sizeof(msg));
	if (rc < 0) {
		snprintf(err, errlen, "cannot open the store in %s: %s", dir,
			 *msg ? msg : ms_strerror(rc));
		return rc;
	}
	ms_recovery_get(S.ms, &rec);
	if (rec.deletes_finished || rec.heads_created || rec.counts_repaired || rec.orphans_removed)
		ed_log(ED_LOG_WARN, "store recovered after an unclean stop: %llu deletes finished, "
		       "%llu heads created, %llu counts repaired, %llu orphans removed",
		       (unsigned long long)rec.deletes_finished, (unsigned long long)rec.heads_created,
		       (unsigned long long)rec.counts_repaired, (unsigned long long)rec.orphans_removed);
	ed_log(ED_LOG_INFO, "store %s open", dir);
	return 0;
}

void ed_store_close(void)
{
	ed_store_lock();
	ms_close(S.ms);
	S.ms = NULL;
	ed_store_unlock();
}

ms_store *ed_store_lock(void)
{
	pthread_mutex_lock(&S.mu);
	uint64_t mine = S.next++;
	while (S.serving != mine)
		pthread_cond_wait(&S.turn, &S.mu);
	ms_store *ms = S.ms;	/* stable while we hold the turn */
	pthread_mutex_unlock(&S.mu);
	return ms;
}

int ed_store_waiters(void)
{
	pthread_mutex_lock(&S.mu);
	int n = S.next > S.serving ? (int)(S.next - S.serving - 1) : 0;
	pthread_mutex_unlock(&S.mu);
	return n;
}

void ed_store_urgent(int on)
{
	pthread_mutex_lock(&S.mu);
	S.urgent += on ? 1 : -1;
	if (S.urgent <= 0) {
		S.urgent = 0;
		pthread_cond_broadcast(&S.calm);
	}
	pthread_mutex_unlock(&S.mu);
}

int ed_store_yield(double max_s)
{
	struct timespec until;
	int was, left, rc = 0;

	clock_gettime(CLOCK_REALTIME, &until);	/* the condition's clock */
	until.tv_sec += (time_t)max_s;
	until.tv_nsec += (long)((max_s - (double)(time_t)max_s) * 1e9);
	if (until.tv_nsec >= 1000000000L) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&S.mu);
	was = S.urgent > 0;
	while (S.urgent > 0 && rc == 0)
		rc = pthread_cond_timedwait(&S.calm, &S.mu, &until);
	left = S.urgent > 0;
	pthread_mutex_unlock(&S.mu);
	return !was ? 0 : left ? 2 : 1;
}

void ed_store_unlock(void)
{
	pthread_mutex_lock(&S.mu);
	S.serving++;
	pthread_cond_broadcast(&S.turn);
	pthread_mutex_unlock(&S.mu);
}

void ed_store_trim(void)
{
	ms_store *ms = ed_store_lock();
	int rc = ms ? ms_trim(ms) : MS_EIO;
	if (rc)
		ed_log(ED_LOG_WARN, "store: trim: %s", ms ? ms_errmsg(ms) :
		    ms_strerror(rc));
	ed_store_unlock();
}

int ed_store_write(int (*fn)(struct ms_store *, void *), void *arg,
    char *err, size_t errlen)
{
	int rc;
	for (int tries = 0;; tries++) {
		ms_store *ms = ed_store_lock();
		rc = ms ? fn(ms, arg) : MS_EIO;
		if (rc && err)
			snprintf(err, errlen, "%s", ms ? ms_errmsg(ms) :
			    "store closed");
		ed_store_unlock();
		if (rc != MS_EBUSY || tries >= ED_STORE_BUSY_S * 20)
			return rc;
		struct timespec ts = { 0, 50 * 1000000L };
		nanosleep(&ts, NULL);
	}
}
