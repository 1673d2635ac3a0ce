/* daemon_harness.c - process and socket helpers for integration tests. */
#include "config.h"
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "daemon_harness.h"

static const char *env_or_fail(const char *name)
{
	const char *v = getenv(name);
	ck_assert_msg(v && *v, "%s is not set: run the tests through 'make check'", name);
	return v;
}

void th_dirs(th_daemon *d)
{
	memset(d, 0, sizeof(*d));
	snprintf(d->dir, sizeof(d->dir), "/tmp/engram-test-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(d->dir));
	snprintf(d->sock, sizeof(d->sock), "%s/run/engramd.sock", d->dir);
	snprintf(d->data, sizeof(d->data), "%s/data", d->dir);
	snprintf(d->log, sizeof(d->log), "%s/engramd.log", d->dir);
}

static long long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

void th_start(th_daemon *d, const char *const *extra)
{
	const char *bin = env_or_fail("ENGRAMD");
	const char *argv[64];
	int n = 0;

	if (!d->dir[0])
		th_dirs(d);
	argv[n++] = bin;
	argv[n++] = "--foreground";
	argv[n++] = "--socket";
	argv[n++] = d->sock;
	argv[n++] = "--data-dir";
	argv[n++] = d->data;
	argv[n++] = "--log-file";
	argv[n++] = d->log;
	/* An empty config keeps the user's own engramd.conf out of tests. */
	argv[n++] = "--config";
	argv[n++] = "/dev/null";
	/* No model unless the test names one (a later --model wins). */
	argv[n++] = "--model";
	argv[n++] = "none";
	for (int i = 0; extra && extra[i] && n < 62; i++)
		argv[n++] = extra[i];
	argv[n] = NULL;
	d->pid = fork();
	ck_assert_int_ge(d->pid, 0);
	if (d->pid == 0) {
		execv(bin, (char *const *)argv);
		_exit(127);
	}
	/* Wait for the socket to answer, or for the daemon to die. */
	for (long long t0 = now_ms(); now_ms() - t0 < 30000; ) {
		int st;
		if (waitpid(d->pid, &st, WNOHANG) == d->pid)
			ck_abort_msg("engramd exited at start with status %d", WEXITSTATUS(st));
		int fd = th_connect(d->sock);
		if (fd >= 0) {
			th_close(fd);
			return;
		}
		usleep(20000);
	}
	ck_abort_msg("engramd did not start listening on %s", d->sock);
}

int th_signal_wait(th_daemon *d, int sig)
{
	int st = 0;
	if (d->pid <= 0)
		return -1;
	kill(d->pid, sig);
	/* Bounded: a daemon that does not stop fails the test, not the suite. */
	for (int i = 0; i < 3000; i++) {
		if (waitpid(d->pid, &st, WNOHANG) == d->pid) {
			d->pid = 0;
			return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
		}
		usleep(10000);
	}
	kill(d->pid, SIGKILL);
	waitpid(d->pid, &st, 0);
	d->pid = 0;
	ck_abort_msg("engramd did not exit within 30 s of signal %d", sig);
	return -1;
}

void th_rmdir(const char *dir)
{
	char cmd[512];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", dir);
}

void th_stop(th_daemon *d)
{
	if (d->pid > 0)
		ck_assert_int_eq(th_signal_wait(d, SIGTERM), 0);
	th_rmdir(d->dir);
}

int th_connect(const char *sock)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

void th_send(int fd, const void *p, size_t n)
{
	const char *c = p;
	while (n) {
		ssize_t w = send(fd, c, n, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		ck_assert_msg(w > 0, "send: %s", strerror(errno));
		c += w;
		n -= w;
	}
}

/* Leftover bytes per fd, so several lines in one read are not lost. */
#define TH_MAXFD 4096
static struct { char *buf; size_t len; } pending[TH_MAXFD];

char *th_read_line(int fd, int timeout_ms)
{
	ck_assert(fd >= 0 && fd < TH_MAXFD);
	long long deadline = now_ms() + timeout_ms;
	for (;;) {
		char *nl = pending[fd].len ? memchr(pending[fd].buf, '\n', pending[fd].len) : NULL;
		if (nl) {
			size_t k = nl - pending[fd].buf;
			char *line = malloc(k + 1);
			memcpy(line, pending[fd].buf, k);
			line[k] = 0;
			memmove(pending[fd].buf, nl + 1, pending[fd].len - k - 1);
			pending[fd].len -= k + 1;
			return line;
		}
		long long left = deadline - now_ms();
		if (left <= 0)
			return NULL;
		struct pollfd p = { .fd = fd, .events = POLLIN };
		int r = poll(&p, 1, (int)left);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return NULL;
		char tmp[65536];
		ssize_t n = read(fd, tmp, sizeof(tmp));
		if (n <= 0)
			return NULL;
		pending[fd].buf = realloc(pending[fd].buf, pending[fd].len + n);
		memcpy(pending[fd].buf + pending[fd].len, tmp, n);
		pending[fd].len += n;
	}
}

json_t *th_read_json(int fd, int timeout_ms)
{
	char *line = th_read_line(fd, timeout_ms);
	if (!line)
		return NULL;
	json_t *j = json_loads(line, 0, NULL);
	free(line);
	return j;
}

void th_close(int fd)
{
	if (fd < 0)
		return;
	if (fd < TH_MAXFD) {
		free(pending[fd].buf);
		pending[fd].buf = NULL;
		pending[fd].len = 0;
	}
	close(fd);
}

json_t *th_roundtrip(const char *sock, const char *line)
{
	int fd = th_connect(sock);
	ck_assert_int_ge(fd, 0);
	th_send(fd, line, strlen(line));
	th_send(fd, "\n", 1);
	json_t *j = th_read_json(fd, 30000);
	th_close(fd);
	return j;
}

const char *th_err_code(json_t *ev)
{
	return json_string_value(json_object_get(json_object_get(ev, "error"), "code"));
}

static char *slurp_fd(int fd)
{
	size_t len = 0, cap = 4096;
	char *s = malloc(cap);
	for (;;) {
		if (len + 1 >= cap)
			s = realloc(s, cap *= 2);
		ssize_t n = read(fd, s + len, cap - len - 1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		len += n;
	}
	s[len] = 0;
	return s;
}

int th_ctl(const char *const *args, const char *const *env, char **out, char **err)
{
	const char *bin = env_or_fail("ENGRAMCTL");
	const char *argv[64];
	int po[2], pe[2], n = 0, st;

	argv[n++] = bin;
	for (int i = 0; args[i] && n < 63; i++)
		argv[n++] = args[i];
	argv[n] = NULL;
	ck_assert_int_eq(pipe(po), 0);
	ck_assert_int_eq(pipe(pe), 0);
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		dup2(po[1], 1);
		dup2(pe[1], 2);
		close(po[0]);
		close(pe[0]);
		for (int i = 0; env && env[i]; i++)
			putenv((char *)env[i]);
		execv(bin, (char *const *)argv);
		_exit(127);
	}
	close(po[1]);
	close(pe[1]);
	/* stderr is small; read stdout fully first, then stderr. */
	char *o = slurp_fd(po[0]);
	char *e = slurp_fd(pe[0]);
	close(po[0]);
	close(pe[0]);
	waitpid(pid, &st, 0);
	if (out) *out = o; else free(o);
	if (err) *err = e; else free(e);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

long th_rss_kib(pid_t pid)
{
	char path[64], line[256];
	long kib = -1;
	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "VmRSS: %ld kB", &kib) == 1)
			break;
	fclose(f);
	return kib;
}
