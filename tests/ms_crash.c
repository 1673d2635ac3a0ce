/* ms_crash.c - crash harness for memstore.  Two scenarios, each SIGKILLs
 * a writing child at random moments and after each kill reopens the store
 * (running recovery) and verifies it, ms_check (refcounts, reachability,
 * catalog agreement, checksums) included:
 *  - sigkill: the child appends blocks (and creates, shares and deletes a
 *    second session, and compacts now and then); every block it reported
 *    as committed must be there with its key, and the head never points
 *    past a durable block.
 *  - prefill: the child runs prefill steps with ms_session_commit (blocks
 *    plus a tail that ends at the new session length, popping a partial
 *    last block), with truncates and forks (committed to, truncated and
 *    deleted) in a random mix; the tail read back must end exactly at the
 *    head's n_tokens, and the length must be the last one reported or the
 *    one of the step under way at the kill.
 * MS_CRASH_SEED=n replays a run (up to timing); the seed is printed. */
#include "config.h"
#include <check.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "memstore.h"
#include "ms_synth.h"

#define L 3
#define H 1
#define D 64
#define B 16
#define KILLS 12

static const uint8_t FP[16] = "crash-harness-fp";

struct report {
	uint64_t index;
	uint8_t key[16];
};

static void block_data(uint64_t idx, uint32_t *tok, float *k, float *v)
{
	for (uint32_t i = 0; i < B; i++)
		tok[i] = (uint32_t)(idx * B + i) * 2654435761u;
	ms_synth_kv(idx, L * H, B, D, k, v);
}

static int append_block(ms_store *ms, int64_t id, uint64_t idx, ms_key *key)
{
	static float k[L * H * B * D], v[L * H * B * D];
	uint32_t tok[B];
	block_data(idx, tok, k, v);
	return ms_session_append(ms, id, tok, B, k, v, key);
}

/* The child: never returns.  Exit codes say where it failed. */
static void child(const char *dir, int fd)
{
	ms_store *ms;
	char err[256];
	if (ms_open(dir, NULL, &ms, err, sizeof(err))) {
		fprintf(stderr, "child open: %s\n", err);
		_exit(10);
	}
	ms_session_info info;
	if (ms_session_get(ms, "main", &info))
		_exit(11);
	/* A crash may have left "tmp" alive: start without it. */
	int rc = ms_session_delete(ms, "tmp");
	if (rc && rc != MS_ENOTFOUND)
		_exit(12);
	ms_geom g = { L, H, D, B, MS_MODE_Q8 };
	for (uint64_t idx = info.n_blocks; idx < 100000; idx++) {
		struct report r = { idx, { 0 } };
		ms_key key;
		if (append_block(ms, info.id, idx, &key))
			_exit(13);
		memcpy(r.key, key.b, 16);
		if (write(fd, &r, sizeof(r)) != sizeof(r))
			_exit(14);
		if (idx % 16 == 15 && ms_compact(ms))
			_exit(18);	/* killed mid-copy or mid-rename too */
		if (idx % 4 == 3) {
			/* A second session sharing the first blocks, then
			 * deleted: exercises refcounts and the delete order. */
			int64_t tid;
			if (ms_session_create(ms, "tmp", FP, &g, &tid))
				_exit(15);
			for (uint64_t j = 0; j < 3 && j <= idx; j++)
				if (append_block(ms, tid, j, NULL))
					_exit(16);
			if (ms_session_delete(ms, "tmp"))
				_exit(17);
		}
	}
	_exit(0);
}

/* Reopens the store and checks everything the child reported. */
static void verify(const char *dir, const struct report *rep, size_t n,
		   uint64_t *n_blocks)
{
	ms_store *ms;
	char err[256];
	int rc = ms_open(dir, NULL, &ms, err, sizeof(err));
	ck_assert_msg(rc == 0, "reopen: %s", err);
	ms_session_info info;
	ck_assert_int_eq(ms_session_get(ms, "main", &info), 0);
	ms_txn *t;
	ck_assert_int_eq(ms_read_begin(ms, &t), 0);
	for (size_t i = 0; i < n; i++) {
		ms_block b;
		ck_assert_uint_lt(rep[i].index, info.n_blocks);
		rc = ms_session_block(t, info.id, rep[i].index, &b);
		ck_assert_msg(rc == 0, "reported block %llu: %s",
			      (unsigned long long)rep[i].index, ms_strerror(rc));
		ck_assert_mem_eq(b.key.b, rep[i].key, 16);
	}
	/* Every block up to the head is durable, and its tokens are right. */
	for (uint64_t i = 0; i < info.n_blocks; i++) {
		ms_block b;
		ck_assert_int_eq(ms_session_block(t, info.id, i, &b), 0);
		uint32_t tok[B], want[B];
		static float k[L * H * B * D], v[L * H * B * D];
		block_data(i, want, k, v);
		ms_block_tokens(&b, tok);
		ck_assert_mem_eq(tok, want, sizeof(tok));
	}
	ck_assert_uint_eq(info.n_tokens, info.n_blocks * B);
	ms_read_end(t);
	uint64_t problems;
	rc = ms_check(ms, 1, &problems);
	ck_assert_msg(rc == 0, "check: %s", ms_errmsg(ms));
	*n_blocks = info.n_blocks;
	ms_close(ms);
}

START_TEST(test_sigkill)
{
	char dir[] = "/tmp/ms_crash_XXXXXX";
	ck_assert_ptr_nonnull(mkdtemp(dir));
	const char *env = getenv("MS_CRASH_SEED");
	unsigned seed = env ? (unsigned)strtoul(env, NULL, 10) :
		       (unsigned)time(NULL) ^ (unsigned)getpid();
	printf("ms_crash: MS_CRASH_SEED=%u\n", seed);
	fflush(stdout);
	srand(seed);

	ms_store *ms;
	char err[256];
	ck_assert_int_eq(ms_open(dir, NULL, &ms, err, sizeof(err)), 0);
	ms_geom g = { L, H, D, B, MS_MODE_Q8 };
	ck_assert_int_eq(ms_session_create(ms, "main", FP, &g, NULL), 0);
	ms_close(ms);	/* never share an LMDB env across fork */

	struct report *all = NULL;
	size_t n_all = 0, cap = 0;
	uint64_t prev_blocks = 0, n_blocks = 0;
	for (int round = 0; round < KILLS; round++) {
		int fds[2];
		ck_assert_int_eq(pipe(fds), 0);
		pid_t pid = fork();
		ck_assert_int_ge(pid, 0);
		if (pid == 0) {
			close(fds[0]);
			child(dir, fds[1]);
		}
		close(fds[1]);
		struct timespec ts = { 0, (10 + rand() % 191) * 1000000L };
		nanosleep(&ts, NULL);
		kill(pid, SIGKILL);
		int status;
		ck_assert_int_eq(waitpid(pid, &status, 0), pid);
		/* Killed by us, not failed on its own. */
		ck_assert_msg(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL,
			      "child exited with %d", WEXITSTATUS(status));
		struct report r;
		ssize_t got;
		while ((got = read(fds[0], &r, sizeof(r))) == sizeof(r)) {
			if (n_all == cap) {
				cap = cap ? cap * 2 : 256;
				all = realloc(all, cap * sizeof(*all));
				ck_assert_ptr_nonnull(all);
			}
			all[n_all++] = r;
		}
		ck_assert_int_eq(got, 0);	/* whole records only */
		close(fds[0]);
		verify(dir, all, n_all, &n_blocks);
		ck_assert_uint_ge(n_blocks, prev_blocks);
		prev_blocks = n_blocks;
	}
	printf("ms_crash: %d kills, %llu blocks committed, %zu reported\n",
	       KILLS, (unsigned long long)n_blocks, n_all);
	/* The run did something. */
	ck_assert_uint_gt(n_all, 0);
	free(all);
	char cmd[300];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	ck_assert_int_eq(system(cmd), 0);
}
END_TEST

/* ---- prefill scenario ------------------------------------------------ */

#define PKILLS 10
#define TL 4		/* layers of a tail */

/* Token at position pos of the prefilled "document". */
static uint32_t ptok(uint64_t pos)
{
	return (uint32_t)(pos * 2654435761u + 17);
}

/* What the child says about session "p" (through the pipe): before a
 * step, the length it will have (done 0); after, the length it has. */
struct step {
	uint64_t len;
	uint64_t done;
};

/* One prefill step on session id holding n tokens: re-sends the partial
 * last block and adds `more` tokens, with a tail of up to 40 positions
 * ending at the new length.  *len receives the new length. */
static int prefill_step(ms_store *ms, int64_t id, uint64_t n, uint64_t more,
			uint64_t *len)
{
	static float k[L * H * 4 * B * D], v[L * H * 4 * B * D];
	static float tk[TL * 40 * D], tv[TL * 40 * D];
	uint32_t tok[4 * B], ttok[40];
	uint64_t first = n - n % B, cnt = n - first + more;
	uint64_t end = first + cnt;
	for (uint64_t i = 0; i < cnt; i++)
		tok[i] = ptok(first + i);
	ms_synth_kv(first * 7 + cnt, L * H, cnt, D, k, v);
	uint32_t tn = end < 40 ? (uint32_t)end : 40;
	for (uint32_t i = 0; i < tn; i++)
		ttok[i] = ptok(end - tn + i);
	ms_synth_kv(end, TL, tn, D, tk, tv);
	/* each step keeps a checkpoint too: fsck after a crash checks them */
	ms_tail tail = { { TL, 1, D, 0, MS_MODE_F16 }, end - tn, ttok, tn, tk,
			 tv, 1 };
	*len = end;
	return ms_session_commit(ms, id, first, tok, cnt, k, v, &tail, NULL);
}

static void say(int fd, uint64_t len, uint64_t done)
{
	struct step st = { len, done };
	if (write(fd, &st, sizeof(st)) != sizeof(st))
		_exit(24);
}

/* The truncated length of a session of n tokens cut at x. */
static uint64_t cut_len(uint64_t n, uint64_t x)
{
	return x >= n ? n : x - x % B;
}

static void prefill_child(const char *dir, int fd, unsigned seed)
{
	ms_store *ms;
	char err[256];
	srand(seed);
	if (ms_open(dir, NULL, &ms, err, sizeof(err))) {
		fprintf(stderr, "child open: %s\n", err);
		_exit(20);
	}
	int rc = ms_session_delete(ms, "f");	/* a fork a kill left */
	if (rc && rc != MS_ENOTFOUND)
		_exit(21);
	ms_session_info p;
	if (ms_session_get(ms, "p", &p))
		_exit(22);
	uint64_t n = p.n_tokens, len;
	for (;;) {
		int op = rand() % 10;
		if (op < 7 || n == 0) {
			uint64_t more = 1 + (uint64_t)rand() % (3 * B);
			say(fd, n + more, 0);
			if (prefill_step(ms, p.id, n, more, &len))
				_exit(23);
			n = len;
			say(fd, n, 1);
		} else if (op < 8 || n > 20 * B) {
			uint64_t x = (uint64_t)rand() % (n + 1);
			say(fd, cut_len(n, x), 0);
			if (ms_session_truncate(ms, p.id, x))
				_exit(25);
			n = cut_len(n, x);
			say(fd, n, 1);
		} else {
			/* A fork that diverges and is deleted: p unchanged. */
			int64_t f;
			if (ms_session_fork(ms, "p", "f", &f))
				_exit(26);
			uint64_t fn = n;
			for (int i = rand() % 3; i > 0; i--) {
				if (rand() % 2 && fn) {
					uint64_t x = (uint64_t)rand() % fn;
					if (ms_session_truncate(ms, f, x))
						_exit(27);
					fn = cut_len(fn, x);
				} else {
					if (prefill_step(ms, f, fn, 1 + (uint64_t)rand() % B,
							 &fn))
						_exit(28);
				}
			}
			if (ms_session_delete(ms, "f"))
				_exit(29);
		}
	}
}

/* The session's blocks hold ptok(0..n) and its tail, if any, ends exactly
 * at n.  Returns whether it had a tail. */
static int prefill_verify_session(ms_store *ms, const char *name,
				  uint64_t *n_out)
{
	ms_session_info info;
	ck_assert_int_eq(ms_session_get(ms, name, &info), 0);
	ms_txn *t;
	ck_assert_int_eq(ms_read_begin(ms, &t), 0);
	ms_session_info h;
	ck_assert_int_eq(ms_session_head(t, info.id, &h), 0);
	ck_assert_uint_eq(h.n_tokens, info.n_tokens);
	for (uint64_t i = 0; i < h.n_blocks; i++) {
		ms_block b;
		uint32_t tok[B];
		ck_assert_int_eq(ms_session_block(t, info.id, i, &b), 0);
		ck_assert_uint_eq(b.position, i * B);
		ms_block_tokens(&b, tok);
		for (uint32_t j = 0; j < b.n_tokens; j++)
			ck_assert_uint_eq(tok[j], ptok(i * B + j));
	}
	ms_block b;
	int rc = ms_tail_get(t, info.id, &b);
	if (rc == 0) {
		/* The invariant prefill relies on. */
		ck_assert_msg(b.position + b.n_tokens == h.n_tokens,
			      "%s: tail [%llu, +%u) but head at %llu", name,
			      (unsigned long long)b.position, b.n_tokens,
			      (unsigned long long)h.n_tokens);
		ck_assert_uint_eq(b.geom.n_layers, TL);
		uint32_t tok[40];
		ck_assert_uint_le(b.n_tokens, 40);
		ms_block_tokens(&b, tok);
		for (uint32_t j = 0; j < b.n_tokens; j++)
			ck_assert_uint_eq(tok[j], ptok(b.position + j));
	} else {
		ck_assert_int_eq(rc, MS_ENOTFOUND);
	}
	ms_read_end(t);
	*n_out = h.n_tokens;
	return rc == 0;
}

START_TEST(test_prefill_sigkill)
{
	char dir[] = "/tmp/ms_crash_XXXXXX";
	ck_assert_ptr_nonnull(mkdtemp(dir));
	const char *env = getenv("MS_CRASH_SEED");
	unsigned seed = env ? (unsigned)strtoul(env, NULL, 10) :
		       (unsigned)time(NULL) ^ (unsigned)getpid();
	printf("ms_crash prefill: MS_CRASH_SEED=%u\n", seed);
	fflush(stdout);
	srand(seed);

	ms_store *ms;
	char err[256];
	ck_assert_int_eq(ms_open(dir, NULL, &ms, err, sizeof(err)), 0);
	ms_geom g = { L, H, D, B, MS_MODE_Q8 };
	ck_assert_int_eq(ms_session_create(ms, "p", FP, &g, NULL), 0);
	ms_close(ms);

	uint64_t done_len = 0, steps = 0, tails = 0, forks_seen = 0;
	for (int round = 0; round < PKILLS; round++) {
		int fds[2];
		ck_assert_int_eq(pipe(fds), 0);
		unsigned cseed = (unsigned)rand();
		pid_t pid = fork();
		ck_assert_int_ge(pid, 0);
		if (pid == 0) {
			close(fds[0]);
			prefill_child(dir, fds[1], cseed);
		}
		close(fds[1]);
		struct timespec ts = { 0, (10 + rand() % 191) * 1000000L };
		nanosleep(&ts, NULL);
		kill(pid, SIGKILL);
		int status;
		ck_assert_int_eq(waitpid(pid, &status, 0), pid);
		ck_assert_msg(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL,
			      "child exited with %d", WEXITSTATUS(status));
		/* The durable length is the last one reported done, or the
		 * one of the step the kill interrupted. */
		struct step st;
		uint64_t pending = done_len;
		ssize_t got;
		while ((got = read(fds[0], &st, sizeof(st))) == sizeof(st)) {
			if (st.done) {
				done_len = pending = st.len;
				steps++;
			} else {
				pending = st.len;
			}
		}
		ck_assert_int_eq(got, 0);
		close(fds[0]);

		ck_assert_int_eq(ms_open(dir, NULL, &ms, err, sizeof(err)), 0);
		uint64_t n;
		tails += prefill_verify_session(ms, "p", &n);
		ck_assert_msg(n == done_len || n == pending, "p holds %llu tokens; "
			      "reported %llu, then %llu under way",
			      (unsigned long long)n, (unsigned long long)done_len,
			      (unsigned long long)pending);
		done_len = n;
		ms_session_info f;
		if (ms_session_get(ms, "f", &f) == 0) {
			uint64_t fn;
			prefill_verify_session(ms, "f", &fn);
			forks_seen++;
		}
		uint64_t problems;
		int rc = ms_check(ms, 1, &problems);
		ck_assert_msg(rc == 0, "check: %s", ms_errmsg(ms));
		ms_close(ms);
	}
	printf("ms_crash prefill: %d kills, %llu steps, %llu tails verified, "
	       "%llu forks left by a kill\n", PKILLS, (unsigned long long)steps,
	       (unsigned long long)tails, (unsigned long long)forks_seen);
	ck_assert_uint_gt(steps, 0);
	ck_assert_uint_gt(tails, 0);
	char cmd[300];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	ck_assert_int_eq(system(cmd), 0);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("ms_crash");
	TCase *tc = tcase_create("crash");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_sigkill);
	tcase_add_test(tc, test_prefill_sigkill);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
