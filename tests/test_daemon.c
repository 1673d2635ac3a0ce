/* test_daemon.c - engramd and engramctl end to end: the real daemon on a
 * temporary socket and data dir, driven by engramctl and raw sockets. */
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
#include <unistd.h>
#include "daemon_harness.h"

static th_daemon D;

static void setup(void)
{
	memset(&D, 0, sizeof(D));
}

static void teardown(void)
{
	if (D.pid > 0)
		th_signal_wait(&D, SIGKILL);
	if (D.dir[0])
		th_rmdir(D.dir);
}

static int contains(const char *hay, const char *needle)
{
	return hay && strstr(hay, needle) != NULL;
}

/* ------------------------------------------------------------- engramctl */

START_TEST(test_ctl_ping_status_shutdown)
{
	char *out = NULL, *err = NULL;
	th_start(&D, NULL);

	const char *ping[] = { "--socket", D.sock, "ping", NULL };
	ck_assert_int_eq(th_ctl(ping, NULL, &out, NULL), 0);
	ck_assert_msg(contains(out, "pong"), "ping said: %s", out);
	free(out);

	const char *status[] = { "--socket", D.sock, "status", NULL };
	ck_assert_int_eq(th_ctl(status, NULL, &out, NULL), 0);
	ck_assert_msg(contains(out, "data dir") && contains(out, D.data), "status said: %s", out);
	free(out);

	const char *js[] = { "--socket", D.sock, "--json", "status", NULL };
	ck_assert_int_eq(th_ctl(js, NULL, &out, NULL), 0);
	json_t *j = json_loads(out, 0, NULL);
	ck_assert_ptr_nonnull(j);
	ck_assert_str_eq(json_string_value(json_object_get(j, "event")), "done");
	ck_assert_int_eq(json_integer_value(json_object_get(j, "pid")), D.pid);
	ck_assert_str_eq(json_string_value(json_object_get(j, "socket")), D.sock);
	ck_assert_str_eq(json_string_value(json_object_get(j, "version")), PACKAGE_VERSION);
	ck_assert(json_is_object(json_object_get(j, "counts")));
	json_decref(j);
	free(out);

	const char *sd[] = { "--socket", D.sock, "shutdown", NULL };
	ck_assert_int_eq(th_ctl(sd, NULL, &out, &err), 0);
	free(out);
	free(err);
	int st = 0;
	for (int i = 0; i < 3000 && waitpid(D.pid, &st, WNOHANG) != D.pid; i++)
		usleep(10000);
	ck_assert(WIFEXITED(st));
	ck_assert_int_eq(WEXITSTATUS(st), 0);
	D.pid = 0;
	ck_assert_int_ne(access(D.sock, F_OK), 0);	/* socket removed */
}
END_TEST

START_TEST(test_ctl_exit_codes)
{
	char *err = NULL;
	th_dirs(&D);
	/* No daemon: 3, with a message that names the socket. */
	const char *ping[] = { "--socket", D.sock, "ping", NULL };
	ck_assert_int_eq(th_ctl(ping, NULL, NULL, &err), 3);
	ck_assert_msg(contains(err, D.sock), "stderr: %s", err);
	free(err);
	/* Usage errors: 2. */
	const char *unk[] = { "frobnicate", NULL };
	ck_assert_int_eq(th_ctl(unk, NULL, NULL, NULL), 2);
	const char *none[] = { NULL };
	ck_assert_int_eq(th_ctl(none, NULL, NULL, NULL), 2);
	const char *extra[] = { "--socket", D.sock, "ping", "extra", NULL };
	ck_assert_int_eq(th_ctl(extra, NULL, NULL, NULL), 2);
	const char *badopt[] = { "--bogus", "ping", NULL };
	ck_assert_int_eq(th_ctl(badopt, NULL, NULL, NULL), 2);
	const char *nosock[] = { "--socket", "", "ping", NULL };	/* not the default */
	ck_assert_int_eq(th_ctl(nosock, NULL, NULL, NULL), 2);
	/* --help everywhere: 0 with text. */
	char *out = NULL;
	const char *h1[] = { "--help", NULL };
	ck_assert_int_eq(th_ctl(h1, NULL, &out, NULL), 0);
	ck_assert(contains(out, "Exit status"));
	free(out);
	const char *h2[] = { "status", "--help", NULL };
	ck_assert_int_eq(th_ctl(h2, NULL, &out, NULL), 0);
	ck_assert(contains(out, "usage: engramctl") && contains(out, "status"));
	free(out);
	const char *h3[] = { "help", "shutdown", NULL };
	ck_assert_int_eq(th_ctl(h3, NULL, &out, NULL), 0);
	ck_assert(contains(out, "shutdown"));
	free(out);
}
END_TEST

/* A fake daemon: answers the first request with an error event, so the ctl
 * must exit 1; then one that never answers, so SIGINT must give 130. */
START_TEST(test_ctl_error_and_interrupt)
{
	th_dirs(&D);
	int ls = socket(AF_UNIX, SOCK_STREAM, 0);
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	ck_assert_uint_lt(strlen(D.dir) + 10, sizeof(sa.sun_path));
	memcpy(sa.sun_path, D.dir, strlen(D.dir));
	memcpy(sa.sun_path + strlen(D.dir), "/fake.sock", 11);
	ck_assert_int_eq(bind(ls, (struct sockaddr *)&sa, sizeof(sa)), 0);
	ck_assert_int_eq(listen(ls, 4), 0);

	/* The fake says on a pipe when it has the second request: the ctl
	 * has its SIGINT handler by then (a fixed sleep raced a slow start). */
	int got[2];
	ck_assert_int_eq(pipe(got), 0);
	pid_t srv = fork();
	if (srv == 0) {
		for (int round = 0; round < 2; round++) {
			int c = accept(ls, NULL, NULL);
			char *line = th_read_line(c, 10000);
			json_t *req = json_loads(line, 0, NULL);
			if (round == 1 && write(got[1], "r", 1) != 1)
				_exit(1);
			if (round == 0) {
				json_t *ev = json_pack("{s:O,s:s,s:{s:s,s:s}}", "id",
					json_object_get(req, "id"), "event", "error", "error",
					"code", "not_found", "message", "no such thing");
				char *s = json_dumps(ev, JSON_COMPACT);
				th_send(c, s, strlen(s));
				th_send(c, "\n", 1);
				/* free is moot: the child exits */
			} else {
				sleep(20);	/* never answers; the ctl is interrupted */
			}
			close(c);
		}
		_exit(0);
	}
	char *err = NULL;
	const char *ping[] = { "--socket", sa.sun_path, "ping", NULL };
	ck_assert_int_eq(th_ctl(ping, NULL, NULL, &err), 1);
	ck_assert_msg(contains(err, "not_found") && contains(err, "no such thing"), "stderr: %s", err);
	free(err);

	pid_t ctl = fork();
	if (ctl == 0) {
		int devnull = open("/dev/null", O_WRONLY);
		dup2(devnull, 2);
		execl(getenv("ENGRAMCTL"), "engramctl", "--socket", sa.sun_path, "ping", (char *)NULL);
		_exit(127);
	}
	struct pollfd pf = { .fd = got[0], .events = POLLIN };
	ck_assert_msg(poll(&pf, 1, 30000) == 1, "the ctl's request never reached the fake");
	kill(ctl, SIGINT);
	close(got[0]);
	close(got[1]);
	int st;
	waitpid(ctl, &st, 0);
	ck_assert(WIFEXITED(st));
	ck_assert_int_eq(WEXITSTATUS(st), 130);
	kill(srv, SIGKILL);
	waitpid(srv, &st, 0);
	close(ls);
}
END_TEST

/* ------------------------------------------------------------- protocol */

START_TEST(test_protocol_errors)
{
	const char *extra[] = { "--set", "max_line=4096", NULL };
	th_start(&D, extra);
	int fd = th_connect(D.sock);
	ck_assert_int_ge(fd, 0);

	static const struct { const char *line; size_t len; const char *code; int id; } cases[] = {
		{ "{bad json", 9, "invalid_json", -1 },
		{ "\xff\xfe{}", 4, "invalid_utf8", -1 },
		{ "{\"id\":1,\"op\":\"ping\"\0}", 21, "invalid_json", -1 },
		{ "[1,2]", 5, "bad_request", -1 },
		{ "\"str\"", 5, "bad_request", -1 },
		{ "{\"op\":\"ping\"}", 13, "missing_field", -1 },
		{ "{\"id\":7}", 8, "missing_field", 7 },
		{ "{\"id\":8,\"op\":42}", 16, "bad_request", 8 },
		{ "{\"id\":9,\"op\":\"no_such_op\"}", 26, "unknown_op", 9 },
		{ "{\"id\":1.5,\"op\":\"ping\"}", 22, "bad_request", -1 },
		{ "{\"id\":10,\"op\":\"ping\",\"delay_ms\":\"x\"}", 36, "invalid_argument", 10 },
		{ "{\"id\":11,\"op\":\"ping\",\"delay_ms\":-5}", 35, "invalid_argument", 11 },
		{ "{\"id\":12,\"id\":13,\"op\":\"ping\"}", 29, "invalid_json", -1 },
		{ "\xed\xa0\x80", 3, "invalid_utf8", -1 },	/* a surrogate */
		{ "\xc0\xaf", 2, "invalid_utf8", -1 },		/* overlong '/' */
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		th_send(fd, cases[i].line, cases[i].len);
		th_send(fd, "\n", 1);
		json_t *ev = th_read_json(fd, 10000);
		ck_assert_msg(ev != NULL, "case %zu: no reply", i);
		ck_assert_str_eq(json_string_value(json_object_get(ev, "event")), "error");
		ck_assert_msg(th_err_code(ev) && !strcmp(th_err_code(ev), cases[i].code),
			      "case %zu: expected %s, got %s", i, cases[i].code, th_err_code(ev));
		json_t *id = json_object_get(ev, "id");
		if (cases[i].id < 0)
			ck_assert(json_is_null(id));
		else
			ck_assert_int_eq(json_integer_value(id), cases[i].id);
		ck_assert(json_is_string(json_object_get(json_object_get(ev, "error"), "message")));
		json_decref(ev);
	}
	/* An over-long line, then a good request on the same connection. */
	size_t big = 10000;
	char *line = malloc(big + 1);
	memset(line, 'x', big);
	line[big] = '\n';
	th_send(fd, line, big + 1);
	free(line);
	json_t *ev = th_read_json(fd, 10000);
	ck_assert_str_eq(th_err_code(ev), "line_too_long");
	json_decref(ev);
	/* Blank lines are ignored; string ids are echoed. */
	const char ok[] = "\n  \r\n{\"id\":\"abc\",\"op\":\"ping\"}\r\n";
	th_send(fd, ok, sizeof(ok) - 1);
	ev = th_read_json(fd, 10000);
	ck_assert_str_eq(json_string_value(json_object_get(ev, "id")), "abc");
	ck_assert_str_eq(json_string_value(json_object_get(ev, "event")), "done");
	ck_assert(json_is_true(json_object_get(ev, "pong")));
	json_decref(ev);
	th_close(fd);
	th_stop(&D);
	D.dir[0] = 0;
}
END_TEST

/* 256 clients, 100 requests each, all pipelined at once; every reply must
 * carry its own request's id, in order. */
START_TEST(test_256_clients)
{
	enum { NC = 256, NR = 100 };
	const char *extra[] = { "--set", "max_connections=1024", NULL };
	th_start(&D, extra);
	int fds[NC], got[NC];
	for (int c = 0; c < NC; c++) {
		fds[c] = th_connect(D.sock);
		ck_assert_int_ge(fds[c], 0);
		got[c] = 0;
		char buf[NR * 64];
		size_t n = 0;
		for (int r = 0; r < NR; r++)
			n += snprintf(buf + n, sizeof(buf) - n,
				      "{\"id\":%d,\"op\":\"%s\"}\n", c * 1000 + r, r % 10 ? "ping" : "status");
		th_send(fds[c], buf, n);
	}
	int done = 0;
	for (int pass = 0; done < NC && pass < 2000; pass++) {
		struct pollfd p[NC];
		for (int c = 0; c < NC; c++)
			p[c] = (struct pollfd){ .fd = got[c] < NR ? fds[c] : -1, .events = POLLIN };
		ck_assert_int_gt(poll(p, NC, 30000), 0);
		for (int c = 0; c < NC; c++) {
			if (!(p[c].revents & (POLLIN | POLLHUP)))
				continue;
			json_t *ev;
			while (got[c] < NR && (ev = th_read_json(fds[c], got[c] == 0 ? 1 : 1))) {
				ck_assert_int_eq(json_integer_value(json_object_get(ev, "id")), c * 1000 + got[c]);
				ck_assert_str_eq(json_string_value(json_object_get(ev, "event")), "done");
				if (got[c] % 10)
					ck_assert(json_is_true(json_object_get(ev, "pong")));
				else
					ck_assert(json_is_object(json_object_get(ev, "counts")));
				json_decref(ev);
				if (++got[c] == NR)
					done++;
			}
		}
	}
	ck_assert_int_eq(done, NC);
	for (int c = 0; c < NC; c++)
		th_close(fds[c]);
	json_t *st = th_roundtrip(D.sock, "{\"id\":1,\"op\":\"status\"}");
	ck_assert_int_ge(json_integer_value(json_object_get(json_object_get(st, "counts"), "requests_total")),
			 NC * NR);
	json_decref(st);
	th_stop(&D);
	D.dir[0] = 0;
}
END_TEST

/* A client that sends half a line and stalls never delays another. */
START_TEST(test_stalled_half_line)
{
	th_start(&D, NULL);
	int stall = th_connect(D.sock);
	th_send(stall, "{\"id\":1,\"op\":\"pi", 16);
	for (int i = 0; i < 50; i++) {
		json_t *ev = th_roundtrip(D.sock, "{\"id\":2,\"op\":\"ping\"}");
		ck_assert_ptr_nonnull(ev);
		ck_assert(json_is_true(json_object_get(ev, "pong")));
		json_decref(ev);
	}
	/* The stalled line completes later and is answered. */
	th_send(stall, "ng\"}\n", 5);
	json_t *ev = th_read_json(stall, 10000);
	ck_assert_int_eq(json_integer_value(json_object_get(ev, "id")), 1);
	json_decref(ev);
	th_close(stall);
	th_stop(&D);
	D.dir[0] = 0;
}
END_TEST

/* A last line without its newline before the client's end of input (a
 * half-close: `printf ... | socat`) is read as a request and answered; a
 * half of a request so ended is an error, not silence. */
START_TEST(test_last_line_without_newline)
{
	th_start(&D, NULL);
	int fd = th_connect(D.sock);
	const char *two = "{\"id\":1,\"op\":\"ping\"}\n{\"id\":2,\"op\":\"ping\"}";
	th_send(fd, two, strlen(two));
	ck_assert_int_eq(shutdown(fd, SHUT_WR), 0);
	for (int want = 1; want <= 2; want++) {
		json_t *ev = th_read_json(fd, 10000);
		ck_assert_ptr_nonnull(ev);
		ck_assert_int_eq(json_integer_value(json_object_get(ev, "id")), want);
		ck_assert(json_is_true(json_object_get(ev, "pong")));
		json_decref(ev);
	}
	th_close(fd);
	fd = th_connect(D.sock);
	th_send(fd, "{\"id\":3,\"op\":\"pi", 16);
	ck_assert_int_eq(shutdown(fd, SHUT_WR), 0);
	json_t *ev = th_read_json(fd, 10000);
	ck_assert_ptr_nonnull(ev);
	ck_assert_str_eq(json_string_value(json_object_get(json_object_get(ev,
	    "error"), "code")), "invalid_json");
	json_decref(ev);
	th_close(fd);
	th_stop(&D);
	D.dir[0] = 0;
}
END_TEST

/* A client that writes requests and never reads: engramd stops reading it
 * once its replies back up (its writes then block), its memory stays
 * bounded, and other clients are served throughout. */
START_TEST(test_client_never_reads)
{
	const char *extra[] = { "--set", "max_output=65536", NULL };
	th_start(&D, extra);
	int fd = th_connect(D.sock);
	int rcvbuf = 4096;
	setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	long rss0 = th_rss_kib(D.pid);
	const char req[] = "{\"id\":1,\"op\":\"status\"}\n";
	size_t sent = 0;
	int blocked = 0;
	/* Each ~300-byte reply costs 24 bytes to ask for: if engramd kept
	 * reading, 64 MiB of requests would queue ~800 MiB of replies. */
	while (sent < (64u << 20)) {
		ssize_t w = send(fd, req, sizeof(req) - 1, MSG_NOSIGNAL);
		if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			/* Let the daemon catch up; blocked twice in a row = stopped. */
			struct pollfd p = { .fd = fd, .events = POLLOUT };
			if (poll(&p, 1, 1000) == 0 && ++blocked >= 3)
				break;
			continue;
		}
		ck_assert_int_gt(w, 0);
		blocked = 0;
		sent += w;
	}
	ck_assert_msg(sent < (64u << 20), "engramd kept reading a client that does not read");
	for (int i = 0; i < 20; i++) {
		json_t *ev = th_roundtrip(D.sock, "{\"id\":5,\"op\":\"ping\"}");
		ck_assert_ptr_nonnull(ev);
		ck_assert(json_is_true(json_object_get(ev, "pong")));
		json_decref(ev);
	}
	long rss1 = th_rss_kib(D.pid);
	ck_assert_msg(rss1 - rss0 < 64 * 1024, "RSS grew from %ld to %ld KiB", rss0, rss1);
	th_close(fd);
	th_stop(&D);
	D.dir[0] = 0;
}
END_TEST

static long long inflight(const char *sock)
{
	json_t *st = th_roundtrip(sock, "{\"id\":1,\"op\":\"status\"}");
	long long n = json_integer_value(json_object_get(st, "inflight"));
	json_decref(st);
	return n;
}

/* A client that leaves mid-request cancels its work. */
START_TEST(test_disconnect_mid_request)
{
	th_start(&D, NULL);
	int fd = th_connect(D.sock);
	const char slow[] = "{\"id\":1,\"op\":\"ping\",\"delay_ms\":60000}\n";
	th_send(fd, slow, sizeof(slow) - 1);
	int seen = 0;
	for (int i = 0; i < 500 && !seen; i++) {
		seen = inflight(D.sock) == 1;
		usleep(10000);
	}
	ck_assert_msg(seen, "the slow request never showed as in flight");
	th_close(fd);
	int gone = 0;
	for (int i = 0; i < 1000 && !gone; i++) {
		gone = inflight(D.sock) == 0;
		usleep(10000);
	}
	ck_assert_msg(gone, "the request of a departed client kept running");
	/* Half a line then a hang-up is harmless too. */
	fd = th_connect(D.sock);
	th_send(fd, "{\"id\":2,\"op", 11);
	th_close(fd);
	ck_assert_int_eq(inflight(D.sock), 0);
	th_stop(&D);
	D.dir[0] = 0;
}
END_TEST

/* ------------------------------------------------------------- process */

START_TEST(test_second_daemon_refused)
{
	th_start(&D, NULL);
	th_daemon other;
	th_dirs(&other);
	/* Same data dir, other socket: the lock refuses it. */
	char cmd[2048];
	snprintf(cmd, sizeof(cmd), "'%s' -f --config /dev/null --model none -s '%s' -d '%s' 2>'%s/err'",
		 getenv("ENGRAMD"), other.sock, D.data, other.dir);
	int st = system(cmd);
	ck_assert_int_eq(WEXITSTATUS(st), 1);
	snprintf(cmd, sizeof(cmd), "grep -q 'in use by another engramd (pid %d)' '%s/err'", D.pid, other.dir);
	ck_assert_msg(system(cmd) == 0, "no clear message about the lock");
	/* Same socket, other data dir: refused, and the live socket kept. */
	snprintf(cmd, sizeof(cmd), "'%s' -f --config /dev/null --model none -s '%s' -d '%s' --log-file '%s/log' 2>'%s/err2'",
		 getenv("ENGRAMD"), D.sock, other.data, other.dir, other.dir);
	st = system(cmd);
	ck_assert_int_eq(WEXITSTATUS(st), 1);
	snprintf(cmd, sizeof(cmd), "grep -q 'another engramd is listening' '%s/log'", other.dir);
	ck_assert_msg(system(cmd) == 0, "no clear message about the socket in use");
	json_t *ev = th_roundtrip(D.sock, "{\"id\":1,\"op\":\"ping\"}");
	ck_assert(json_is_true(json_object_get(ev, "pong")));
	json_decref(ev);
	th_rmdir(other.dir);
	th_stop(&D);
	D.dir[0] = 0;
}
END_TEST

/* A store damaged on disk is refused at start with why, exit 1, never a
 * crash: LMDB's file cut short (it used to die of SIGBUS reading past
 * its end through the map), the catalog overwritten. */
START_TEST(test_damaged_store)
{
	th_start(&D, NULL);
	ck_assert_int_eq(th_signal_wait(&D, SIGTERM), 0);
	char cmd[4096];
	snprintf(cmd, sizeof(cmd), "cp '%s/store/kv/data.mdb' '%s/whole' && "
		 "head -c 8192 '%s/whole' > '%s/store/kv/data.mdb'",
		 D.data, D.dir, D.dir, D.data);
	ck_assert_int_eq(system(cmd), 0);
	snprintf(cmd, sizeof(cmd), "'%s' -f --config /dev/null --model none -s '%s' -d '%s' 2>'%s/err'",
		 getenv("ENGRAMD"), D.sock, D.data, D.dir);
	int st = system(cmd);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 1, "cut short: status %d", st);
	snprintf(cmd, sizeof(cmd), "grep -q 'data.mdb is 8192 bytes, shorter than' '%s/err'", D.dir);
	ck_assert_msg(system(cmd) == 0, "no clear message about the cut file");
	/* put back whole, it starts */
	snprintf(cmd, sizeof(cmd), "cp '%s/whole' '%s/store/kv/data.mdb'", D.dir, D.data);
	ck_assert_int_eq(system(cmd), 0);
	th_start(&D, NULL);
	ck_assert_int_eq(th_signal_wait(&D, SIGTERM), 0);
	snprintf(cmd, sizeof(cmd), "head -c 100000 /dev/urandom > '%s/store/catalog.db' && "
		 "rm -f '%s/store/catalog.db-wal' '%s/store/catalog.db-shm'",
		 D.data, D.data, D.data);
	ck_assert_int_eq(system(cmd), 0);
	snprintf(cmd, sizeof(cmd), "'%s' -f --config /dev/null --model none -s '%s' -d '%s' 2>'%s/err'",
		 getenv("ENGRAMD"), D.sock, D.data, D.dir);
	st = system(cmd);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 1, "catalog: status %d", st);
	snprintf(cmd, sizeof(cmd), "grep -q 'cannot open the store.*not a database' '%s/err'", D.dir);
	ck_assert_msg(system(cmd) == 0, "no clear message about the catalog");
}
END_TEST

START_TEST(test_socket_permissions)
{
	th_start(&D, NULL);
	struct stat st;
	ck_assert_int_eq(stat(D.sock, &st), 0);
	ck_assert_int_eq(st.st_mode & 0777, 0600);
	char dir[400];
	snprintf(dir, sizeof(dir), "%s/run", D.dir);
	ck_assert_int_eq(stat(dir, &st), 0);
	ck_assert_int_eq(st.st_mode & 0777, 0700);
	ck_assert_int_eq(stat(D.data, &st), 0);
	ck_assert_int_eq(st.st_mode & 0777, 0700);
	if (geteuid() != 0) {
		th_stop(&D);
		D.dir[0] = 0;
		return;
	}
	/* As root, open the file system up and connect as nobody: SO_PEERCRED
	 * must still refuse. */
	chmod(D.dir, 0755);
	chmod(dir, 0755);
	chmod(D.sock, 0666);
	int p[2];
	ck_assert_int_eq(pipe(p), 0);
	pid_t pid = fork();
	if (pid == 0) {
		close(p[0]);
		if (setgid(65534) < 0 || setuid(65534) < 0)
			_exit(2);
		int fd = th_connect(D.sock);
		if (fd < 0)
			_exit(3);
		char *line = th_read_line(fd, 10000);
		if (line && write(p[1], line, strlen(line)) < 0)
			_exit(4);
		_exit(line ? 0 : 5);
	}
	close(p[1]);
	char buf[512] = { 0 };
	ssize_t n = read(p[0], buf, sizeof(buf) - 1);
	close(p[0]);
	int status;
	waitpid(pid, &status, 0);
	ck_assert_int_eq(WEXITSTATUS(status), 0);
	ck_assert_int_gt(n, 0);
	json_t *ev = json_loads(buf, 0, NULL);
	ck_assert_str_eq(th_err_code(ev), "permission_denied");
	json_decref(ev);
	th_stop(&D);
	D.dir[0] = 0;
}
END_TEST

/* SIGTERM while requests run: they end (cancelled), the client hears it,
 * and engramd exits 0 with its socket gone. */
START_TEST(test_sigterm_in_flight)
{
	th_start(&D, NULL);
	int fds[4];
	for (int i = 0; i < 4; i++) {
		fds[i] = th_connect(D.sock);
		char req[128];
		int n = snprintf(req, sizeof(req), "{\"id\":%d,\"op\":\"ping\",\"delay_ms\":60000}\n", i);
		th_send(fds[i], req, n);
	}
	for (int i = 0; i < 500 && inflight(D.sock) < 4; i++)
		usleep(10000);
	ck_assert_int_eq(inflight(D.sock), 4);
	kill(D.pid, SIGTERM);
	for (int i = 0; i < 4; i++) {
		json_t *ev = th_read_json(fds[i], 20000);
		ck_assert_ptr_nonnull(ev);
		ck_assert_int_eq(json_integer_value(json_object_get(ev, "id")), i);
		ck_assert_str_eq(th_err_code(ev), "cancelled");
		json_decref(ev);
		ck_assert_ptr_null(th_read_line(fds[i], 20000));	/* then EOF */
		th_close(fds[i]);
	}
	ck_assert_int_eq(th_signal_wait(&D, 0), 0);
	ck_assert_int_ne(access(D.sock, F_OK), 0);
	th_rmdir(D.dir);
	D.dir[0] = 0;
}
END_TEST

START_TEST(test_config_file)
{
	th_dirs(&D);
	char conf[400], cmd[2048];
	snprintf(conf, sizeof(conf), "%s/engramd.conf", D.dir);
	FILE *f = fopen(conf, "w");
	fprintf(f, "# a comment\n\nmax_line = 100\nlog_level = debug\nworkers=2\n");
	fclose(f);
	/* Command line wins over the file: max_line from --set. */
	const char *extra[] = { "--config", conf, "--set", "max_line=200", NULL };
	th_start(&D, extra);
	int fd = th_connect(D.sock);
	char line[180];
	memset(line, ' ', sizeof(line));
	memcpy(line, "{\"id\":1,\"op\":\"ping\"}", 20);
	line[sizeof(line) - 1] = '\n';
	th_send(fd, line, sizeof(line));
	json_t *ev = th_read_json(fd, 10000);
	ck_assert(json_is_true(json_object_get(ev, "pong")));
	json_decref(ev);
	th_close(fd);
	th_stop(&D);
	D.dir[0] = 0;

	/* A bad config: exit 2 with file and line. */
	th_dirs(&D);
	snprintf(conf, sizeof(conf), "%s/bad.conf", D.dir);
	f = fopen(conf, "w");
	fprintf(f, "workers = 2\nno_such_key = 1\n");
	fclose(f);
	snprintf(cmd, sizeof(cmd), "'%s' -f -c '%s' -s '%s' -d '%s' 2>'%s/err'; echo $? > '%s/rc'",
		 getenv("ENGRAMD"), conf, D.sock, D.data, D.dir, D.dir);
	ck_assert_int_eq(system(cmd), 0);
	snprintf(cmd, sizeof(cmd), "grep -q '^2$' '%s/rc' && grep -q 'bad.conf:2: unknown setting' '%s/err'",
		 D.dir, D.dir);
	ck_assert_msg(system(cmd) == 0, "bad config not reported with exit 2 and file:line");
	/* Bad values and options too: sparse-attention settings out of
	 * range (sparse_reach takes 0 .. 2^30, sparse_prefill_local
	 * 0 .. 2^20, sparse_squeeze and sparse_codes 0 or 1) or not
	 * numbers. */
	static const char *const bad[] = { "--workers 0",
		"--set sparse_reach=-1", "--set sparse_prefill_local=2000000",
		"--set sparse_scan_max=x", "--set prefill_checkpoint=-5",
		"--set sparse_prefill_top_k=70000",
		"--set sparse_question_top_k=-1",
		"--set sparse_question_top_k=65537",
		"--set sparse_squeeze=2", "--set sparse_squeeze=yes",
		"--set sparse_shortlist=-1", "--set sparse_shortlist=2000000000",
		"--set sparse_codes=2", "--set sparse_codes=-1", "--set sparse_codes=on",
		"--set warm_start=2", "--set warm_start=yes",
		"--set pack=4", "--set pack=-1", "--set pack=head",
		"--set idle_trim=-1", "--set idle_trim=86401",
		"--set idle_trim=soon",
		/* a negative size (-1K shifted a negative number), an empty
		 * path (an empty socket bound a name no client could find) */
		"--set max_output=-1K", "--set max_line=-1M", "--set log_file=",
		"--set data_dir=" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(cmd, sizeof(cmd), "'%s' -f --config /dev/null %s -s '%s' -d '%s' 2>/dev/null",
			 getenv("ENGRAMD"), bad[i], D.sock, D.data);
		ck_assert_msg(WEXITSTATUS(system(cmd)) == 2, "%s: not exit 2", bad[i]);
	}
	snprintf(cmd, sizeof(cmd), "'%s' --no-such-option 2>/dev/null", getenv("ENGRAMD"));
	ck_assert_int_eq(WEXITSTATUS(system(cmd)), 2);
	snprintf(cmd, sizeof(cmd), "'%s' -f -c '%s/missing.conf' 2>/dev/null", getenv("ENGRAMD"), D.dir);
	ck_assert_int_eq(WEXITSTATUS(system(cmd)), 2);
	snprintf(cmd, sizeof(cmd), "'%s' -f --config /dev/null -s '' -d '%s' 2>/dev/null",
		 getenv("ENGRAMD"), D.data);
	ck_assert_int_eq(WEXITSTATUS(system(cmd)), 2);
	/* A directory as the config file, and a NUL byte in one: exit 2
	 * with why (a directory used to read as an empty file). */
	snprintf(cmd, sizeof(cmd), "'%s' -f -c '%s' -s '%s' -d '%s' 2>'%s/err'; "
		 "test $? -eq 2 && grep -q 'Is a directory' '%s/err'",
		 getenv("ENGRAMD"), D.dir, D.sock, D.data, D.dir, D.dir);
	ck_assert_msg(system(cmd) == 0, "a directory as the config: not refused");
	f = fopen(conf, "w");
	fputs("workers = 2\nmax_line = 100", f);
	fputc(0, f);
	fputs("\n", f);
	fclose(f);
	snprintf(cmd, sizeof(cmd), "'%s' -f -c '%s' -s '%s' -d '%s' 2>'%s/err'; "
		 "test $? -eq 2 && grep -q 'bad.conf:2: a NUL byte' '%s/err'",
		 getenv("ENGRAMD"), conf, D.sock, D.data, D.dir, D.dir);
	ck_assert_msg(system(cmd) == 0, "a NUL byte in the config: not said");
	th_rmdir(D.dir);
	D.dir[0] = 0;
}
END_TEST

/* SIGHUP reopens the log file (for logrotate). */
START_TEST(test_sighup_reopens_log)
{
	th_start(&D, NULL);
	char moved[400], cmd[1024];
	snprintf(moved, sizeof(moved), "%s.1", D.log);
	ck_assert_int_eq(rename(D.log, moved), 0);
	kill(D.pid, SIGHUP);
	int ok = 0;
	for (int i = 0; i < 500 && !ok; i++) {
		ok = access(D.log, F_OK) == 0;
		usleep(10000);
	}
	ck_assert_msg(ok, "SIGHUP did not reopen %s", D.log);
	snprintf(cmd, sizeof(cmd), "grep -q 'log reopened' '%s' && grep -q 'started' '%s'", D.log, moved);
	ck_assert_int_eq(system(cmd), 0);
	th_stop(&D);
	D.dir[0] = 0;
}
END_TEST

/* Without --foreground engramd detaches and returns once it serves; with no
 * --socket both programs agree on $XDG_RUNTIME_DIR/engram/engramd.sock. */
START_TEST(test_detach_and_default_paths)
{
	th_dirs(&D);
	char cmd[2048], env_rt[400], env_data[400];
	snprintf(cmd, sizeof(cmd),
		 "XDG_RUNTIME_DIR='%s' XDG_DATA_HOME='%s/xdg' '%s' --config /dev/null --model none",
		 D.dir, D.dir, getenv("ENGRAMD"));
	ck_assert_int_eq(system(cmd), 0);
	snprintf(env_rt, sizeof(env_rt), "XDG_RUNTIME_DIR=%s", D.dir);
	snprintf(env_data, sizeof(env_data), "ENGRAM_SOCKET=");
	const char *env[] = { env_rt, env_data, NULL };
	char *out = NULL;
	const char *status[] = { "--json", "status", NULL };
	ck_assert_int_eq(th_ctl(status, env, &out, NULL), 0);
	json_t *j = json_loads(out, 0, NULL);
	char want[400];
	snprintf(want, sizeof(want), "%s/xdg/engram", D.dir);
	ck_assert_str_eq(json_string_value(json_object_get(j, "data_dir")), want);
	snprintf(want, sizeof(want), "%s/engram/engramd.sock", D.dir);
	ck_assert_str_eq(json_string_value(json_object_get(j, "socket")), want);
	pid_t pid = json_integer_value(json_object_get(j, "pid"));
	json_decref(j);
	free(out);
	/* Detached, it logs to the data dir. */
	snprintf(cmd, sizeof(cmd), "grep -q started '%s/xdg/engram/engramd.log'", D.dir);
	ck_assert_int_eq(system(cmd), 0);
	const char *sd[] = { "shutdown", NULL };
	ck_assert_int_eq(th_ctl(sd, env, NULL, NULL), 0);
	for (int i = 0; i < 3000 && kill(pid, 0) == 0; i++)
		usleep(10000);
	ck_assert_int_ne(kill(pid, 0), 0);
	th_rmdir(D.dir);
	D.dir[0] = 0;
}
END_TEST

int main(void)
{
	Suite *s = suite_create("daemon");
	TCase *ctl = tcase_create("engramctl");
	TCase *proto = tcase_create("protocol");
	TCase *proc = tcase_create("process");
	TCase *all[] = { ctl, proto, proc };
	for (int i = 0; i < 3; i++) {
		tcase_add_checked_fixture(all[i], setup, teardown);
		tcase_set_timeout(all[i], 240);
		suite_add_tcase(s, all[i]);
	}
	tcase_add_test(ctl, test_ctl_ping_status_shutdown);
	tcase_add_test(ctl, test_ctl_exit_codes);
	tcase_add_test(ctl, test_ctl_error_and_interrupt);
	tcase_add_test(proto, test_protocol_errors);
	tcase_add_test(proto, test_256_clients);
	tcase_add_test(proto, test_stalled_half_line);
	tcase_add_test(proto, test_last_line_without_newline);
	tcase_add_test(proto, test_client_never_reads);
	tcase_add_test(proto, test_disconnect_mid_request);
	tcase_add_test(proc, test_second_daemon_refused);
	tcase_add_test(proc, test_damaged_store);
	tcase_add_test(proc, test_socket_permissions);
	tcase_add_test(proc, test_sigterm_in_flight);
	tcase_add_test(proc, test_config_file);
	tcase_add_test(proc, test_sighup_reopens_log);
	tcase_add_test(proc, test_detach_and_default_paths);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
