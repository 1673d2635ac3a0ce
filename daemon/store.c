/* store.c - engramd's memstore: opened once at start under <data dir>/store
 * (recovery runs there, before the socket opens) and closed at stop.
 *
 * memstore is single-threaded per ms_store (memstore.h), and requests run
 * on several workers: every use goes through ed_store_lock() /
 * ed_store_unlock(), one mutex.  Hold it for one store call or one short
 * sequence, never across a forward pass.
 */
#include "config.h"
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include "engramd.h"
#include "memstore.h"

static struct {
	pthread_mutex_t mu;
	ms_store *ms;		/* owned; NULL before open and after close */
} S = { PTHREAD_MUTEX_INITIALIZER, NULL };

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
	pthread_mutex_lock(&S.mu);
	ms_close(S.ms);
	S.ms = NULL;
	pthread_mutex_unlock(&S.mu);
}

ms_store *ed_store_lock(void)
{
	pthread_mutex_lock(&S.mu);
	return S.ms;
}

void ed_store_unlock(void)
{
	pthread_mutex_unlock(&S.mu);
}
