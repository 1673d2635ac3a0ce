/* output.c - what engramctl's commands share: sending a request and
 * printing its events, reading input, small JSON accessors. */
#include "config.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "ectl.h"

/* Prints each event as a JSON line (--json), or errors readably. */
int ectl_print_event(void *arg, json_t *ev)
{
	ectl_ctx *x = arg;
	if (x->json) {
		char *s = json_dumps(ev, JSON_COMPACT);
		if (s) {
			puts(s);
			fflush(stdout);
		}
		free(s);
		return 0;
	}
	json_t *err = json_object_get(ev, "error");
	if (err)
		fprintf(stderr, "engramctl: %s: %s\n",
			json_string_value(json_object_get(err, "code")),
			json_string_value(json_object_get(err, "message")));
	return 0;
}

struct capture {
	ectl_ctx *x;
	json_t *done;		/* the final "done" event, kept */
};

static int capture_event(void *arg, json_t *ev)
{
	struct capture *cp = arg;
	const char *name = json_string_value(json_object_get(ev, "event"));
	ectl_print_event(cp->x, ev);
	if (name && !strcmp(name, "done")) {
		json_decref(cp->done);
		cp->done = json_incref(ev);
	}
	return 0;
}

/* Sends one request and keeps its "done" event in *done (caller decrefs). */
int ectl_request(ectl_ctx *x, json_t *req, json_t **done)
{
	struct capture cp = { x, NULL };
	int rc = ectl_connect(&x->conn, x->socket);
	if (rc < 0) {
		json_decref(req);
		return -rc;
	}
	rc = ectl_call(&x->conn, req, capture_event, &cp);
	ectl_close(&x->conn);
	if (done)
		*done = cp.done;
	else
		json_decref(cp.done);
	return rc;
}

void ectl_print_duration(double s)
{
	long t = (long)s;
	if (t >= 86400)
		printf("%ldd %ldh %ldm", t / 86400, t % 86400 / 3600, t % 3600 / 60);
	else if (t >= 3600)
		printf("%ldh %ldm %lds", t / 3600, t % 3600 / 60, t % 60);
	else if (t >= 60)
		printf("%ldm %lds", t / 60, t % 60);
	else
		printf("%.1fs", s);
}

/* ------------------------------------------------------------- commands */

int ectl_no_args(int argc, char **argv, const char *name)
{
	if (argc > 1) {
		fprintf(stderr, "engramctl %s: unexpected argument '%s'\n", name, argv[1]);
		return ECTL_EXIT_USAGE;
	}
	return 0;
}

const char *ectl_jstr(json_t *o, const char *k)
{
	const char *s = json_string_value(json_object_get(o, k));
	return s ? s : "-";
}

const char *ectl_jpath(json_t *o, const char *k)
{
	static char buf[4][4 * 4096 + 1];
	static unsigned next;
	const unsigned char *s = (const unsigned char *)ectl_jstr(o, k);
	char *out = buf[next++ % 4], *p = out, *end = out + sizeof(buf[0]) - 5;

	for (; *s && p < end; s++) {
		if (*s >= 0x20 && *s != 0x7f)
			*p++ = (char)*s;
		else if (*s == '\n' || *s == '\t' || *s == '\r')
			p += sprintf(p, "\\%c", *s == '\n' ? 'n' : *s == '\t' ?
			    't' : 'r');
		else
			p += sprintf(p, "\\x%02x", *s);
	}
	*p = 0;
	return out;
}

long long ectl_jint(json_t *o, const char *k)
{
	return (long long)json_integer_value(json_object_get(o, k));
}

/* TEXT, or all of standard input for "-"; *buf is malloc'd or NULL. */
int ectl_read_input(const char *arg, char **buf, size_t *len)
{
	if (strcmp(arg, "-")) {
		*len = strlen(arg);
		*buf = malloc(*len + 1);
		memcpy(*buf, arg, *len + 1);
		return 0;
	}
	size_t cap = 1 << 16, n = 0;
	char *b = malloc(cap);
	for (;;) {
		if (n == cap) {
			char *nb = realloc(b, cap *= 2);
			if (!nb) {
				free(b);
				fprintf(stderr, "engramctl: standard input is too large for memory\n");
				return ECTL_EXIT_USAGE;
			}
			b = nb;
		}
		ssize_t k = read(0, b + n, cap - n);
		if (k < 0 && errno == EINTR && !ectl_interrupted)
			continue;
		if (k < 0) {
			free(b);
			if (ectl_interrupted)
				return ECTL_EXIT_INTERRUPTED;
			fprintf(stderr, "engramctl: cannot read standard input: %s\n", strerror(errno));
			return ECTL_EXIT_USAGE;
		}
		if (k == 0)
			break;
		n += k;
	}
	*buf = b;
	*len = n;
	return 0;
}

