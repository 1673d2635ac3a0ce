/* settings.c - engramd's settings: defaults, the config file, and paths.
 *
 * The order of precedence is: defaults < config file < command line.  The
 * command line is applied last by main.c through the same ed_settings_set(),
 * so a key means the same thing in both places.
 */
#include "config.h"
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "engramd.h"

void ed_settings_init(ed_settings *s)
{
	memset(s, 0, sizeof(*s));
	s->log_level = ED_LOG_INFO;
	/* Room for a large pasted question; a whole document goes through
	 * ingest, not through one request line. */
	s->max_line = 1u << 20;
	/* A client that stops reading may have this much queued before we stop
	 * reading its requests; it never holds up anyone else. */
	s->max_output = 4u << 20;
	/* A request's text may come in parts (docs/PROTOCOL.md); this bounds
	 * what one request can make engramd hold. */
	s->max_input = 256u << 20;
	s->max_connections = 1024;
	s->max_inflight = 64;
	s->workers = 4;
	s->threads = 0;			/* 0: one per online core */
	s->shutdown_timeout = 30.0;
	/* Block-sparse attention over long sessions: the engine's defaults
	 * (measured in bench/RESULTS.md). */
	eng_sparse_params sp;
	eng_sparse_params_init(&sp);
	s->sparse_top_k = (int)sp.top_k;
	s->sparse_sink = (int)sp.sink;
	s->sparse_local = (int)sp.local;
	s->sparse_prefill_local = (int)sp.prefill_local;
	s->sparse_prefill_top_k = (int)sp.prefill_top_k;
	s->sparse_question_top_k = (int)sp.question_top_k;
	s->sparse_dense_max = (int)sp.dense_max;
	s->sparse_reach = (int)sp.reach;
	s->sparse_scan_max = (int)sp.scan_max;
	s->sparse_shortlist = (int)sp.shortlist;
	s->sparse_squeeze = (int)sp.squeeze;
	s->sparse_codes = (int)sp.codes;
	s->kv_mode = 0;			/* f16: exact, read zero-copy */
	/* 7.9 MB of window state per checkpoint for the default model:
	 * 3.9% on top of the blocks at this spacing. */
	s->prefill_checkpoint = 65536;
	s->warm_start = 1;
	s->idle_trim = 30;
	s->pack = 1;		/* ENG_PACK_HEAD: decode ~1.2x faster */
}

void ed_settings_free(ed_settings *s)
{
	free(s->socket_path);
	free(s->data_dir);
	free(s->config_path);
	free(s->log_file);
	free(s->model);
	memset(s, 0, sizeof(*s));
}

static int set_str(char **dst, const char *v)
{
	char *d = strdup(v);
	if (!d)
		return -ENOMEM;
	free(*dst);
	*dst = d;
	return 0;
}

/* Parses a decimal integer in [lo, hi], with an optional K/M/G suffix when
 * unit is set (sizes). */
static int parse_num(const char *v, long long lo, long long hi, int unit,
		     long long *out)
{
	char *end;
	errno = 0;
	long long n = strtoll(v, &end, 10);
	if (errno || end == v)
		return -EINVAL;
	if (unit && *end) {
		if (n < 0)	/* no negative size; and -1 << 10 is undefined */
			return -EINVAL;
		int sh = *end == 'K' || *end == 'k' ? 10 :
			 *end == 'M' || *end == 'm' ? 20 :
			 *end == 'G' || *end == 'g' ? 30 : -1;
		if (sh < 0 || n > (LLONG_MAX >> sh))
			return -EINVAL;
		n <<= sh;
		end++;
	}
	if (*end || n < lo || n > hi)
		return -EINVAL;
	*out = n;
	return 0;
}

static int parse_bool(const char *v, int *out)
{
	if (!strcmp(v, "1") || !strcmp(v, "yes") || !strcmp(v, "true") || !strcmp(v, "on"))
		*out = 1;
	else if (!strcmp(v, "0") || !strcmp(v, "no") || !strcmp(v, "false") || !strcmp(v, "off"))
		*out = 0;
	else
		return -EINVAL;
	return 0;
}

int ed_settings_set(ed_settings *s, const char *key, const char *v,
		    char *err, size_t errlen)
{
	long long n = 0;
	int rc = 0;

#define NUM(field, lo, hi, unit)                                       \
	do {                                                            \
		if ((rc = parse_num(v, lo, hi, unit, &n)) == 0)         \
			s->field = n;                                   \
		else                                                    \
			snprintf(err, errlen, "%s: expected a number from %lld to %lld, got '%s'", \
				 key, (long long)(lo), (long long)(hi), v); \
		return rc;                                              \
	} while (0)

	if (!*v && (!strcmp(key, "socket") || !strcmp(key, "data_dir") ||
	    !strcmp(key, "log_file"))) {
		/* an empty socket path binds an abstract name no client finds */
		snprintf(err, errlen, "%s: expected a path, got ''", key);
		return -EINVAL;
	}
	if (!strcmp(key, "socket"))
		return set_str(&s->socket_path, v);
	if (!strcmp(key, "data_dir"))
		return set_str(&s->data_dir, v);
	if (!strcmp(key, "log_file"))
		return set_str(&s->log_file, v);
	if (!strcmp(key, "model"))
		return set_str(&s->model, v);
	if (!strcmp(key, "max_line"))
		NUM(max_line, 64, 1LL << 30, 1);
	if (!strcmp(key, "max_output"))
		NUM(max_output, 4096, 1LL << 32, 1);
	if (!strcmp(key, "max_input"))
		NUM(max_input, 4096, 1LL << 34, 1);
	if (!strcmp(key, "disk_budget"))
		NUM(disk_budget, 1LL << 20, 1LL << 50, 1);
	if (!strcmp(key, "max_connections"))
		NUM(max_connections, 1, 65536, 0);
	if (!strcmp(key, "max_inflight"))
		NUM(max_inflight, 1, 4096, 0);
	if (!strcmp(key, "workers"))
		NUM(workers, 1, 128, 0);
	if (!strcmp(key, "threads"))
		NUM(threads, 0, 1024, 0);
	if (!strcmp(key, "pack"))
		NUM(pack, 0, 3, 0);
	if (!strcmp(key, "shutdown_timeout"))
		NUM(shutdown_timeout, 0, 3600, 0);
	if (!strcmp(key, "sparse_top_k"))
		NUM(sparse_top_k, 0, 65536, 0);
	if (!strcmp(key, "sparse_sink"))
		NUM(sparse_sink, 0, 1 << 20, 0);
	if (!strcmp(key, "sparse_local"))
		NUM(sparse_local, 0, 1 << 20, 0);
	if (!strcmp(key, "sparse_prefill_local"))
		NUM(sparse_prefill_local, 0, 1 << 20, 0);
	if (!strcmp(key, "sparse_prefill_top_k"))
		NUM(sparse_prefill_top_k, 0, 65536, 0);
	if (!strcmp(key, "sparse_question_top_k"))
		NUM(sparse_question_top_k, 0, 65536, 0);
	if (!strcmp(key, "sparse_dense_max"))
		NUM(sparse_dense_max, 0, 1 << 30, 0);
	if (!strcmp(key, "sparse_reach"))
		NUM(sparse_reach, 0, 1 << 30, 0);
	if (!strcmp(key, "sparse_scan_max"))
		NUM(sparse_scan_max, 0, 1 << 30, 0);
	if (!strcmp(key, "sparse_shortlist"))
		NUM(sparse_shortlist, 0, 1 << 30, 0);
	if (!strcmp(key, "sparse_squeeze"))
		NUM(sparse_squeeze, 0, 1, 0);
	if (!strcmp(key, "sparse_codes"))
		NUM(sparse_codes, 0, 1, 0);
	if (!strcmp(key, "prefill_checkpoint"))
		NUM(prefill_checkpoint, 0, 1 << 30, 0);
	if (!strcmp(key, "warm_start"))
		NUM(warm_start, 0, 1, 0);
	if (!strcmp(key, "idle_trim"))
		NUM(idle_trim, 0, 86400, 0);
	if (!strcmp(key, "kv_mode")) {
		static const char *const modes[] = { "f16", "q8", "q4" };
		for (int i = 0; i < 3; i++)
			if (!strcmp(v, modes[i])) {
				s->kv_mode = i;
				return 0;
			}
		snprintf(err, errlen, "kv_mode: expected f16, q8 or q4, got '%s'", v);
		return -EINVAL;
	}
	if (!strcmp(key, "syslog")) {
		if (parse_bool(v, &s->use_syslog) < 0)
			goto bad_bool;
		return 0;
	}
	if (!strcmp(key, "foreground")) {
		if (parse_bool(v, &s->foreground) < 0)
			goto bad_bool;
		return 0;
	}
	if (!strcmp(key, "log_level")) {
		int l = ed_log_level_parse(v);
		if (l < 0) {
			snprintf(err, errlen, "log_level: expected debug, info, warn or error, got '%s'", v);
			return -EINVAL;
		}
		s->log_level = l;
		return 0;
	}
	snprintf(err, errlen, "unknown setting '%s'", key);
	return -EINVAL;
bad_bool:
	snprintf(err, errlen, "%s: expected yes or no, got '%s'", key, v);
	return -EINVAL;
#undef NUM
}

static char *trim(char *p)
{
	while (isspace((unsigned char)*p))
		p++;
	char *e = p + strlen(p);
	while (e > p && isspace((unsigned char)e[-1]))
		*--e = 0;
	return p;
}

/* Reads a line of at most cap - 1 bytes (without its newline) into buf:
 * 0, or 1 when longer, 2 when it holds a NUL byte, -1 at the end.  A
 * fixed buffer: the file may be /dev/zero. */
static int config_line(FILE *f, char *buf, size_t cap)
{
	size_t n = 0;
	int c, nul = 0;

	while ((c = getc(f)) != EOF && c != '\n') {
		if (n + 1 >= cap)
			return 1;
		nul |= c == 0;
		buf[n++] = (char)c;
	}
	buf[n] = 0;
	if (c == EOF && !n)
		return -1;
	return nul ? 2 : 0;
}

int ed_config_load(ed_settings *s, const char *path, char *err, size_t errlen)
{
	FILE *f = fopen(path, "r");
	char line[4096];
	int lineno = 0, rc = 0, got;

	if (!f) {
		rc = -errno;
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return rc;
	}
	while ((got = config_line(f, line, sizeof(line))) >= 0) {
		lineno++;
		if (got) {
			snprintf(err, errlen, "%s:%d: %s", path, lineno, got == 1 ?
			    "line too long" : "a NUL byte");
			rc = -EINVAL;
			break;
		}
		char *p = trim(line);
		if (!*p || *p == '#')
			continue;
		char *eq = strchr(p, '=');
		if (!eq) {
			snprintf(err, errlen, "%s:%d: expected 'key = value'", path, lineno);
			rc = -EINVAL;
			break;
		}
		*eq = 0;
		char *key = trim(p), *val = trim(eq + 1), msg[512];
		if ((rc = ed_settings_set(s, key, val, msg, sizeof(msg))) < 0) {
			snprintf(err, errlen, "%s:%d: %s", path, lineno, msg);
			break;
		}
	}
	if (!rc && ferror(f)) {		/* EISDIR for a directory */
		rc = errno ? -errno : -EIO;
		snprintf(err, errlen, "%s: %s", path, strerror(-rc));
	}
	fclose(f);
	return rc;
}


int ed_paths_default(ed_settings *s)
{
	if (!s->data_dir && !(s->data_dir = ed_paths_data_default()))
		return -ENOMEM;
	if (!s->socket_path && !(s->socket_path = ed_paths_socket_default()))
		return -ENOMEM;
	return 0;
}
