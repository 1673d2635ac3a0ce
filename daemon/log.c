/* log.c - log lines with time and level, to stderr, a file or syslog.
 *
 * Any thread may log: each line is formatted in full first and written with
 * one write(2), so lines from different threads never interleave.  The file
 * descriptor is swapped under a mutex on SIGHUP (ed_log_reopen).
 */
#include "config.h"
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>
#include "engramd.h"

static struct {
	pthread_mutex_t mu;
	int fd;			/* 2 for stderr, or the log file */
	int use_syslog;
	int level;
	char *path;		/* owned; NULL when logging to stderr */
} lg = { PTHREAD_MUTEX_INITIALIZER, 2, 0, ED_LOG_INFO, NULL };

static const char *level_names[] = { "debug", "info", "warn", "error" };

int ed_log_level_parse(const char *name)
{
	for (int i = 0; i < 4; i++)
		if (!strcasecmp(name, level_names[i]))
			return i;
	return -1;
}

static int open_file(const char *path)
{
	return open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
}

int ed_log_open(const ed_settings *s)
{
	lg.level = s->log_level;
	if (s->use_syslog) {
		openlog("engramd", LOG_PID, LOG_DAEMON);
		lg.use_syslog = 1;
		return 0;
	}
	if (s->log_file) {
		int fd = open_file(s->log_file);
		if (fd < 0)
			return -errno;
		lg.path = strdup(s->log_file);
		lg.fd = fd;
	}
	return 0;
}

int ed_log_reopen(void)
{
	int rc = 0;
	pthread_mutex_lock(&lg.mu);
	if (lg.path) {
		int fd = open_file(lg.path);
		if (fd < 0) {
			rc = -errno;
		} else {
			close(lg.fd);
			lg.fd = fd;
		}
	}
	pthread_mutex_unlock(&lg.mu);
	return rc;
}

void ed_log_close(void)
{
	pthread_mutex_lock(&lg.mu);
	if (lg.path) {
		close(lg.fd);
		free(lg.path);
		lg.path = NULL;
		lg.fd = 2;
	}
	if (lg.use_syslog)
		closelog();
	lg.use_syslog = 0;
	pthread_mutex_unlock(&lg.mu);
}

void ed_log(int level, const char *fmt, ...)
{
	char line[2048];
	va_list ap;
	int n = 0;

	if (level < lg.level)
		return;
	if (lg.use_syslog) {
		static const int prio[] = { LOG_DEBUG, LOG_INFO, LOG_WARNING, LOG_ERR };
		va_start(ap, fmt);
		vsyslog(prio[level], fmt, ap);
		va_end(ap);
		return;
	}
	struct timespec ts;
	struct tm tm;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	n = (int)strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%S", &tm);
	n += snprintf(line + n, sizeof(line) - n, ".%03ldZ %-5s ",
		      ts.tv_nsec / 1000000, level_names[level]);
	va_start(ap, fmt);
	int m = vsnprintf(line + n, sizeof(line) - n - 1, fmt, ap);
	va_end(ap);
	n = m < 0 ? n : (n + m > (int)sizeof(line) - 2 ? (int)sizeof(line) - 2 : n + m);
	line[n++] = '\n';
	pthread_mutex_lock(&lg.mu);
	ssize_t w = write(lg.fd, line, n);
	(void)w;	/* nowhere to report a failed log write */
	pthread_mutex_unlock(&lg.mu);
}
