/* threadpool.c - a small pthread pool for the kernels (eng_pool).
 *
 * Design: one task at a time.  The caller publishes fn/arg, sets pending to
 * the worker count and bumps gen; workers run fn with their index and the
 * last one to finish signals.  Both sides spin for a short while before
 * sleeping on a condition variable: a decode step runs ~130 products back
 * to back, where sleeping between them would cost more than the products,
 * while an idle engine must not burn cores (the machine is shared).
 *
 * Invariants: gen only grows and is changed under mu (so a worker that
 * checks it under mu and then waits cannot miss a wake-up); pending is
 * decremented once per worker per task; fn/arg are written before gen is
 * released and not touched again until pending reaches 0.
 */
#include "config.h"
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>
#include "kernels.h"

/* About 20-50 microseconds of polling before sleeping. */
#define SPIN_ROUNDS 4096

struct worker {
	struct eng_pool *pool;
	int ith;
};

struct eng_pool {
	int n;				/* threads, the caller's included */
	pthread_t *threads;		/* n - 1 workers */
	struct worker *workers;
	pthread_mutex_t mu;
	pthread_cond_t go;		/* gen changed or stop set */
	pthread_cond_t done;		/* pending reached 0 */
	_Atomic unsigned gen;
	_Atomic int pending;
	_Atomic int stop;
	eng_pool_fn fn;
	void *arg;
	void *scratch;			/* 64-byte aligned, scratch_cap bytes */
	size_t scratch_cap;
};

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#endif
}

static void *worker_main(void *p)
{
	struct worker *wk = p;
	struct eng_pool *pool = wk->pool;
	unsigned seen = 0;
	for (;;) {
		unsigned g;
		int spins = 0;
		while ((g = atomic_load_explicit(&pool->gen, memory_order_acquire)) == seen &&
		       !atomic_load(&pool->stop)) {
			if (++spins < SPIN_ROUNDS) {
				cpu_relax();
				continue;
			}
			pthread_mutex_lock(&pool->mu);
			while (atomic_load(&pool->gen) == seen && !atomic_load(&pool->stop))
				pthread_cond_wait(&pool->go, &pool->mu);
			pthread_mutex_unlock(&pool->mu);
		}
		if (atomic_load(&pool->stop))
			return NULL;
		seen = g;
		pool->fn(pool->arg, wk->ith, pool->n);
		if (atomic_fetch_sub_explicit(&pool->pending, 1, memory_order_acq_rel) == 1) {
			pthread_mutex_lock(&pool->mu);
			pthread_cond_signal(&pool->done);
			pthread_mutex_unlock(&pool->mu);
		}
	}
}

int eng_pool_open(eng_pool **out, int n_threads)
{
	if (!out || n_threads > ENG_POOL_MAX_THREADS)
		return ENG_EINVAL;
	*out = NULL;
	if (n_threads <= 0) {
		long c = sysconf(_SC_NPROCESSORS_ONLN);
		n_threads = c < 1 ? 1 : c > ENG_POOL_MAX_THREADS ? ENG_POOL_MAX_THREADS : (int)c;
	}
	eng_pool *p = calloc(1, sizeof *p);
	if (!p)
		return ENG_ENOMEM;
	p->n = 1;	/* grows as workers start, so close joins only those */
	pthread_mutex_init(&p->mu, NULL);
	pthread_cond_init(&p->go, NULL);
	pthread_cond_init(&p->done, NULL);
	int err = ENG_ENOMEM;
	if (n_threads > 1) {
		p->threads = calloc((size_t)n_threads - 1, sizeof *p->threads);
		p->workers = calloc((size_t)n_threads - 1, sizeof *p->workers);
		if (!p->threads || !p->workers)
			goto fail;
	}
	for (int i = 1; i < n_threads; i++) {
		p->workers[i - 1] = (struct worker){ p, i };
		int rc = pthread_create(&p->threads[i - 1], NULL, worker_main,
					&p->workers[i - 1]);
		if (rc) {
			err = -rc;
			goto fail;
		}
		p->n = i + 1;
	}
	*out = p;
	return 0;
fail:
	eng_pool_close(p);
	return err;
}

void eng_pool_close(eng_pool *pool)
{
	if (!pool)
		return;
	pthread_mutex_lock(&pool->mu);
	atomic_store(&pool->stop, 1);
	pthread_cond_broadcast(&pool->go);
	pthread_mutex_unlock(&pool->mu);
	for (int i = 1; i < pool->n; i++)
		pthread_join(pool->threads[i - 1], NULL);
	pthread_cond_destroy(&pool->go);
	pthread_cond_destroy(&pool->done);
	pthread_mutex_destroy(&pool->mu);
	free(pool->threads);
	free(pool->workers);
	free(pool->scratch);
	free(pool);
}

int eng_pool_threads(const eng_pool *pool)
{
	return pool ? pool->n : 1;
}

void eng_pool_run(eng_pool *pool, eng_pool_fn fn, void *arg)
{
	if (!pool || pool->n == 1) {
		fn(arg, 0, 1);
		return;
	}
	pool->fn = fn;
	pool->arg = arg;
	atomic_store_explicit(&pool->pending, pool->n - 1, memory_order_relaxed);
	pthread_mutex_lock(&pool->mu);
	atomic_fetch_add_explicit(&pool->gen, 1, memory_order_release);
	pthread_cond_broadcast(&pool->go);
	pthread_mutex_unlock(&pool->mu);

	fn(arg, 0, pool->n);

	for (int spins = 0; atomic_load_explicit(&pool->pending, memory_order_acquire) > 0;) {
		if (++spins < SPIN_ROUNDS) {
			cpu_relax();
			continue;
		}
		pthread_mutex_lock(&pool->mu);
		while (atomic_load(&pool->pending) > 0)
			pthread_cond_wait(&pool->done, &pool->mu);
		pthread_mutex_unlock(&pool->mu);
	}
}

void *eng__pool_scratch(eng_pool *pool, size_t bytes)
{
	if (!pool)
		return NULL;
	if (bytes <= pool->scratch_cap)
		return pool->scratch;
	size_t cap = (bytes + 63) & ~(size_t)63;
	if (cap < bytes)
		return NULL;
	void *m = aligned_alloc(64, cap);
	if (!m)
		return NULL;
	free(pool->scratch);
	pool->scratch = m;
	pool->scratch_cap = cap;
	return m;
}
