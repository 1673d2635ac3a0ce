/* conn.c - a blocking JSON-lines connection to engramd (ectl.h). */
#include "config.h"
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include "ectl.h"
#include "text.h"

/* Replies can carry whole documents; bound them all the same. */
#define ECTL_MAX_REPLY (256u << 20)

volatile int ectl_interrupted;

int ectl_connect(ectl_conn *c, const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };

	memset(c, 0, sizeof(*c));
	c->fd = -1;
	if (strlen(path) >= sizeof(sa.sun_path)) {
		fprintf(stderr, "engramctl: socket path too long: %s\n", path);
		return -ECTL_EXIT_UNREACHABLE;
	}
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c->fd < 0 || connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int e = errno;
		fprintf(stderr, "engramctl: cannot reach engramd at %s: %s\n", path, strerror(e));
		if (e == ENOENT || e == ECONNREFUSED)
			fprintf(stderr, "engramctl: is engramd running? Start it with 'engramd'.\n");
		if (c->fd >= 0)
			close(c->fd);
		c->fd = -1;
		return -ECTL_EXIT_UNREACHABLE;
	}
	c->path = strdup(path);
	ed_frame_init(&c->frame, ECTL_MAX_REPLY);
	return 0;
}

void ectl_close(ectl_conn *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	for (size_t i = c->headq; i < c->nqueue; i++)
		json_decref(c->queue[i]);
	free(c->queue);
	c->queue = NULL;
	c->nqueue = c->headq = c->capqueue = 0;
	ed_frame_free(&c->frame);
	free(c->path);
	c->path = NULL;
}

static int write_all(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
		if (w < 0) {
			if (errno == EINTR && !ectl_interrupted)
				continue;
			return -errno;
		}
		p += w;
		n -= w;
	}
	return 0;
}

static int on_frame(void *arg, enum ed_frame_kind kind, const char *data, size_t len)
{
	ectl_conn *c = arg;
	if (kind != ED_FRAME_LINE)
		return -EPROTO;
	json_t *ev = json_loadb(data, len, 0, NULL);
	if (!json_is_object(ev)) {
		json_decref(ev);
		return -EPROTO;
	}
	if (c->nqueue == c->capqueue) {
		size_t cap = c->capqueue ? 2 * c->capqueue : 16;
		json_t **q = realloc(c->queue, cap * sizeof(*q));
		if (!q) {
			json_decref(ev);
			return -ENOMEM;
		}
		c->queue = q;
		c->capqueue = cap;
	}
	c->queue[c->nqueue++] = ev;
	return 0;
}

/* Next event from the daemon: 0 with *ev (owned by the caller), or an exit
 * status. */
static int next_event(ectl_conn *c, json_t **ev)
{
	char buf[65536];

	while (c->headq == c->nqueue) {
		c->headq = c->nqueue = 0;
		struct pollfd p = { .fd = c->fd, .events = POLLIN };
		if (ectl_interrupted)
			return ECTL_EXIT_INTERRUPTED;
		if (poll(&p, 1, -1) < 0) {
			if (errno == EINTR)
				continue;
			return ECTL_EXIT_UNREACHABLE;
		}
		ssize_t n = read(c->fd, buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			fprintf(stderr, "engramctl: engramd closed the connection%s%s\n",
				n < 0 ? ": " : "", n < 0 ? strerror(errno) : "");
			return ECTL_EXIT_UNREACHABLE;
		}
		if (ed_frame_feed(&c->frame, buf, n, on_frame, c, NULL) != 0) {
			fprintf(stderr, "engramctl: engramd sent a reply that is not JSON\n");
			return ECTL_EXIT_UNREACHABLE;
		}
	}
	*ev = c->queue[c->headq++];
	return 0;
}

/* Writes req as one line; returns 0 or an exit status. */
static int send_line(ectl_conn *c, json_t *req)
{
	char *line = json_dumps(req, JSON_COMPACT);
	if (!line)
		return ECTL_EXIT_USAGE;
	size_t n = strlen(line);
	line[n] = '\n';		/* json_dumps' NUL becomes the newline */
	int rc = write_all(c->fd, line, n + 1);
	free(line);
	if (rc < 0) {
		if (ectl_interrupted)
			return ECTL_EXIT_INTERRUPTED;
		fprintf(stderr, "engramctl: cannot send to engramd: %s\n", strerror(-rc));
		return ECTL_EXIT_UNREACHABLE;
	}
	return 0;
}

static int wait_final(ectl_conn *c, json_int_t id, ectl_event_cb cb, void *arg);

int ectl_call(ectl_conn *c, json_t *req, ectl_event_cb cb, void *arg)
{
	json_int_t id = ++c->next_id;
	json_object_set_new(req, "id", json_integer(id));
	int rc = send_line(c, req);
	json_decref(req);
	return rc ? rc : wait_final(c, id, cb, arg);
}

/* Raw bytes per part: 192 KiB encode to 256 KiB of base64, well under
 * engramd's default line limit of 1 MiB. */
#define ECTL_PART (192u << 10)

int ectl_call_input(ectl_conn *c, json_t *req, const char *input, size_t len,
		    ectl_event_cb cb, void *arg)
{
	json_int_t id = ++c->next_id;
	int rc = 0;

	json_object_set_new(req, "id", json_integer(id));
	if (len <= ECTL_PART && ed_utf8_valid(input, len) && !memchr(input, 0, len)) {
		json_object_set_new(req, "text", json_stringn(input, len));
		rc = send_line(c, req);
		json_decref(req);
		return rc ? rc : wait_final(c, id, cb, arg);
	}
	char *b = malloc(ed_b64_encoded_len(ECTL_PART) + 1);
	if (!b) {
		json_decref(req);
		return ECTL_EXIT_ERROR;
	}
	size_t off = 0;
	do {
		size_t k = len - off < ECTL_PART ? len - off : ECTL_PART;
		ed_b64_encode((const unsigned char *)input + off, k, b);
		json_object_set_new(req, "data", json_stringn(b, ed_b64_encoded_len(k)));
		json_object_set_new(req, "more", json_boolean(off + k < len));
		rc = send_line(c, req);
		off += k;
	} while (rc == 0 && off < len);
	free(b);
	json_decref(req);
	return rc ? rc : wait_final(c, id, cb, arg);
}

static int wait_final(ectl_conn *c, json_int_t id, ectl_event_cb cb, void *arg)
{
	int rc;
	for (;;) {
		json_t *ev;
		if ((rc = next_event(c, &ev)) != 0)
			return rc;
		json_t *eid = json_object_get(ev, "id");
		/* An event with a null id is about the connection as a whole
		 * (refused, shutting down): it ends this call too. */
		int ours = json_is_integer(eid) && json_integer_value(eid) == id;
		const char *name = json_string_value(json_object_get(ev, "event"));
		int final = name && (!strcmp(name, "done") || !strcmp(name, "error"));
		if (ours || json_is_null(eid))
			cb(arg, ev);
		if ((ours || json_is_null(eid)) && final) {
			rc = !strcmp(name, "done") ? ECTL_EXIT_OK : ECTL_EXIT_ERROR;
			json_decref(ev);
			return rc;
		}
		json_decref(ev);
	}
}
