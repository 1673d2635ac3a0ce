/* test_store.c - engramd's store lock (daemon/store.c, compiled in with
 * a stub for the log): fair, ed_store_write tries a write that waits
 * for the map to grow again, and a job yields to questions on their way
 * to a first token.
 *
 * Fairness matters to questions: a job that takes the lock stretch after
 * stretch (a stored prefix adopted, a prefill's commits) must let a
 * question that waits in first, where a plain mutex most often hands the
 * lock straight back to the job.
 */
#include "config.h"

#include <check.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engramd.h"
#include "memstore.h"

void ed_log(int level, const char *fmt, ...)
{
	(void)level;
	(void)fmt;
}

static char *open_store(void)
{
	char *dir = strdup("/tmp/engram-test-store-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(dir));
	ed_settings s;
	memset(&s, 0, sizeof(s));
	s.data_dir = dir;
	char err[256];
	ck_assert_msg(ed_store_open(&s, err, sizeof(err)) == 0, "%s", err);
	return dir;
}

static void close_store(char *dir)
{
	char cmd[512];
	ed_store_close();
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	ck_assert_int_eq(system(cmd), 0);
	free(dir);
}

static void sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
	nanosleep(&ts, NULL);
}

static char order[8];
static int n_order;

static void *waiter(void *arg)
{
	(void)arg;
	ed_store_lock();
	order[n_order++] = 'Q';
	ed_store_unlock();
	return NULL;
}

/* The job holds the lock, a question waits for it; the job lets go and
 * at once asks again: the question goes first. */
START_TEST(lock_is_fair)
{
	char *dir = open_store();
	pthread_t t;
	for (int round = 0; round < 20; round++) {
		n_order = 0;
		ck_assert_ptr_nonnull(ed_store_lock());
		ck_assert_int_eq(pthread_create(&t, NULL, waiter, NULL), 0);
		for (int w = 0; ed_store_waiters() < 1; w++) {
			ck_assert_int_lt(w, 10000);
			sleep_ms(1);
		}
		ed_store_unlock();
		ed_store_lock();
		order[n_order++] = 'J';
		ed_store_unlock();
		ck_assert_int_eq(pthread_join(t, NULL), 0);
		ck_assert_int_eq(n_order, 2);
		ck_assert_msg(order[0] == 'Q' && order[1] == 'J',
		    "round %d: %.2s", round, order);
		ck_assert_int_eq(ed_store_waiters(), 0);
	}
	close_store(dir);
}
END_TEST

static int calls, busy_left, locked_between;

/* MS_EBUSY busy_left times, then 0; notes whether the lock was free to
 * take between tries (another thread could go in). */
static int busy_fn(ms_store *ms, void *arg)
{
	(void)arg;
	ck_assert_ptr_nonnull(ms);
	calls++;
	return busy_left-- > 0 ? MS_EBUSY : 0;
}

static void *taker(void *arg)
{
	(void)arg;
	ed_store_lock();
	locked_between++;
	ed_store_unlock();
	return NULL;
}

static int busy_then_take(ms_store *ms, void *arg)
{
	pthread_t *t = arg;
	(void)ms;
	if (calls++ == 0) {
		ck_assert_int_eq(pthread_create(t, NULL, taker, NULL), 0);
		for (int w = 0; ed_store_waiters() < 1; w++) {
			ck_assert_int_lt(w, 10000);
			sleep_ms(1);
		}
		return MS_EBUSY;
	}
	ck_assert_int_eq(locked_between, 1);	/* it went between */
	return 0;
}

static int fail_fn(ms_store *ms, void *arg)
{
	(void)arg;
	calls++;
	return ms_session_adopt(ms, 424242, NULL, 0, NULL);
}

/* A write that fails with MS_EBUSY is tried again, the lock let go in
 * between; any other failure is returned at once with the store's
 * message. */
START_TEST(write_retries_busy)
{
	char *dir = open_store();
	char err[256] = "";
	pthread_t t;

	calls = 0;
	busy_left = 3;
	ck_assert_int_eq(ed_store_write(busy_fn, NULL, err, sizeof(err)), 0);
	ck_assert_int_eq(calls, 4);

	calls = 0;
	locked_between = 0;
	ck_assert_int_eq(ed_store_write(busy_then_take, &t, NULL, 0), 0);
	ck_assert_int_eq(pthread_join(t, NULL), 0);
	ck_assert_int_eq(calls, 2);

	calls = 0;
	ck_assert_int_eq(ed_store_write(fail_fn, NULL, err, sizeof(err)),
	    MS_ENOTFOUND);
	ck_assert_int_eq(calls, 1);
	ck_assert_msg(strstr(err, "424242"), "message: %s", err);
	close_store(dir);
}
END_TEST

static atomic_int calmed;	/* the question is done: set before it says so */
static atomic_int yielded = -1;

static void *yielder(void *arg)
{
	atomic_store(&yielded, ed_store_yield(*(double *)arg));
	return NULL;
}

/* A job that yields goes on at once with no question about; waits while
 * one is on its way to a first token, until it is there (all of them:
 * two here), or gives up after max_s. */
START_TEST(job_yields_to_questions)
{
	pthread_t t;
	double max_s = 30.0, brief = 0.2;
	struct timespec t0, t1;

	ck_assert_int_eq(ed_store_yield(30.0), 0);
	ed_store_urgent(1);
	ed_store_urgent(1);
	atomic_store(&calmed, 0);
	ck_assert_int_eq(pthread_create(&t, NULL, yielder, &max_s), 0);
	sleep_ms(100);
	ck_assert_int_eq(atomic_load(&yielded), -1);	/* still waiting */
	ed_store_urgent(0);
	sleep_ms(100);
	ck_assert_int_eq(atomic_load(&yielded), -1);	/* one left */
	atomic_store(&calmed, 1);
	ed_store_urgent(0);
	ck_assert_int_eq(pthread_join(t, NULL), 0);
	ck_assert_int_eq(atomic_load(&yielded), 1);
	ck_assert_int_eq(atomic_load(&calmed), 1);
	ck_assert_int_eq(ed_store_yield(30.0), 0);

	/* A question that never gets there: the job waits max_s only. */
	ed_store_urgent(1);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	atomic_store(&yielded, -1);
	ck_assert_int_eq(pthread_create(&t, NULL, yielder, &brief), 0);
	ck_assert_int_eq(pthread_join(t, NULL), 0);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	ck_assert_int_eq(atomic_load(&yielded), 2);
	ck_assert(t1.tv_sec - t0.tv_sec + (t1.tv_nsec - t0.tv_nsec) / 1e9 >=
	    0.19);
	ed_store_urgent(0);
	ck_assert_int_eq(ed_store_yield(30.0), 0);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("store");
	TCase *tc = tcase_create("lock");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, lock_is_fair);
	tcase_add_test(tc, write_retries_busy);
	tcase_add_test(tc, job_yields_to_questions);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
