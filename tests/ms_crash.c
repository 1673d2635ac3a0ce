/* ms_crash.c - crash harness for memstore: a child appends blocks (and
 * creates, shares and deletes a second session, and compacts now and then)
 * in a loop while the parent
 * SIGKILLs it at random moments, 20 times.  After each kill the parent
 * reopens the store (running recovery) and checks that every block the
 * child reported as committed is there with its key and a valid checksum,
 * that the head never points past a durable block, and that ms_check
 * (refcounts, reachability, catalog agreement, checksums) finds nothing.
 * MS_CRASH_SEED=n replays a run; the seed is printed. */
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
#define KILLS 20

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

int main(void)
{
	Suite *s = suite_create("ms_crash");
	TCase *tc = tcase_create("crash");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_sigkill);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
