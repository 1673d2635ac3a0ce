/* cmd_daemon.c - engramctl commands about the daemon itself: ping, status,
 * shutdown. */
#include "config.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "ectl.h"

static int cmd_ping(ectl_ctx *x, int argc, char **argv)
{
	json_t *done = NULL;
	int rc = ectl_no_args(argc, argv, "ping");
	if (rc)
		return rc;
	struct timespec a, b;
	clock_gettime(CLOCK_MONOTONIC, &a);
	rc = ectl_request(x, json_pack("{s:s}", "op", "ping"), &done);
	clock_gettime(CLOCK_MONOTONIC, &b);
	if (rc == 0 && !x->json)
		printf("pong from %s in %.2f ms\n", x->socket,
		       (b.tv_sec - a.tv_sec) * 1e3 + (b.tv_nsec - a.tv_nsec) / 1e6);
	json_decref(done);
	return rc;
}

static int cmd_status(ectl_ctx *x, int argc, char **argv)
{
	json_t *done = NULL;
	int rc = ectl_no_args(argc, argv, "status");
	if (rc)
		return rc;
	rc = ectl_request(x, json_pack("{s:s}", "op", "status"), &done);
	if (rc == 0 && !x->json) {
		json_t *counts = json_object_get(done, "counts");
		json_t *model = json_object_get(done, "model");
		printf("engramd %s, pid %lld, up ", ectl_jstr(done, "version"), ectl_jint(done, "pid"));
		ectl_print_duration(json_number_value(json_object_get(done, "uptime_s")));
		printf("%s\n", json_is_true(json_object_get(done, "stopping")) ? " (stopping)" : "");
		printf("  data dir     %s\n", ectl_jstr(done, "data_dir"));
		printf("  socket       %s\n", ectl_jstr(done, "socket"));
		printf("  model        %s\n", json_is_object(model) ? ectl_jstr(model, "name") : "none loaded");
		printf("  connections  %lld open, %lld since start\n",
		       ectl_jint(counts, "connections"), ectl_jint(counts, "connections_total"));
		printf("  requests     %lld served, %lld errors, %lld in flight\n",
		       ectl_jint(counts, "requests_total"), ectl_jint(counts, "errors_total"),
		       ectl_jint(done, "inflight"));
		json_t *j;
		size_t i;
		json_array_foreach(json_object_get(done, "jobs"), i, j)
			printf("  job %-8lld %s %s, %s: %lld/%lld, %.1f tok/s\n", ectl_jint(j, "job"),
			       ectl_jstr(j, "kind"), ectl_jstr(j, "session"), ectl_jstr(j, "state"),
			       ectl_jint(j, "done"), ectl_jint(j, "total"),
			       json_number_value(json_object_get(j, "rate")));
	}
	json_decref(done);
	return rc;
}

static int cmd_shutdown(ectl_ctx *x, int argc, char **argv)
{
	int rc = ectl_no_args(argc, argv, "shutdown");
	if (rc)
		return rc;
	rc = ectl_request(x, json_pack("{s:s}", "op", "shutdown"), NULL);
	if (rc == 0 && !x->json)
		printf("engramd is stopping\n");
	return rc;
}

const ectl_command ectl_cmds_daemon[] = {
	{ "ping", "", "check that engramd answers",
	  "Sends a ping and prints the round-trip time.", cmd_ping },
	{ "status", "", "show the daemon's version, uptime, paths and counters",
	  "Shows engramd's version, pid, uptime, data dir, socket, model and\n"
	  "connection and request counters.", cmd_status },
	{ "shutdown", "", "stop engramd cleanly",
	  "Asks engramd to stop: it stops accepting, cancels or checkpoints what\n"
	  "runs, closes its stores and exits 0.", cmd_shutdown },
	{ NULL, NULL, NULL, NULL, NULL },
};
