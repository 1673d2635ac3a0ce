/* daemon_harness.h - helpers for integration tests that run the real engramd
 * and engramctl (paths from $ENGRAMD and $ENGRAMCTL, set by make check).
 * Each test gets a fresh temporary directory with the socket and data dir. */
#ifndef ENGRAM_TESTS_DAEMON_HARNESS_H
#define ENGRAM_TESTS_DAEMON_HARNESS_H

#include <stddef.h>
#include <sys/types.h>
#include <jansson.h>

typedef struct th_daemon {
	pid_t pid;
	char dir[256];		/* temp dir, removed by th_daemon_stop */
	char sock[320];
	char data[320];
	char log[320];
} th_daemon;

/* mkdtemp under /tmp; fills dir, sock, data and log paths. */
void th_dirs(th_daemon *d);
/* Starts engramd -f on d's paths with extra args (NULL-terminated), waits
 * until the socket answers.  Aborts the test on failure. */
void th_start(th_daemon *d, const char *const *extra);
/* Sends sig and waits for exit; returns the exit status (or 128+signal). */
int th_signal_wait(th_daemon *d, int sig);
/* SIGTERM, wait, expect exit 0, remove the temp dir. */
void th_stop(th_daemon *d);
void th_rmdir(const char *dir);

/* A connected blocking socket, or -1. */
int th_connect(const char *sock);
/* Writes all n bytes or fails the test. */
void th_send(int fd, const void *p, size_t n);
/* Reads one line (without '\n') within timeout_ms; returns a malloc'd
 * string or NULL on EOF/timeout.  Keeps leftovers per fd in a small table. */
char *th_read_line(int fd, int timeout_ms);
/* Reads a line and parses it as JSON; NULL on failure. */
json_t *th_read_json(int fd, int timeout_ms);
void th_close(int fd);
/* One request, one reply: sends line (a '\n' is added) and parses the
 * first reply line. */
json_t *th_roundtrip(const char *sock, const char *line);
/* The error code of an error event, or NULL. */
const char *th_err_code(json_t *ev);

/* Runs engramctl with args (NULL-terminated) and optional extra env
 * ("K=V", NULL-terminated), capturing stdout and stderr into malloc'd
 * strings (may pass NULL).  Returns the exit status. */
int th_ctl(const char *const *args, const char *const *env, char **out, char **err);

/* VmRSS of a process in KiB, or -1. */
long th_rss_kib(pid_t pid);

#endif
