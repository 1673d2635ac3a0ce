/* proto.h - engramd's JSON-lines protocol: parsing requests and building
 * events (docs/PROTOCOL.md is the user's side of this). */
#ifndef ENGRAM_DAEMON_PROTO_H
#define ENGRAM_DAEMON_PROTO_H

#include <stddef.h>
#include <jansson.h>
#include "engramd.h"

/* Parses one request line (without its '\n').
 * Returns 0 with *msg (owned by the caller), *id (borrowed from *msg) and
 * *op set; 1 for a blank line (nothing to answer); -1 with *err and errmsg
 * set (and *id set to the request's id when it could be read, else NULL,
 * with *msg holding it: the caller json_decref()s *msg in every case). */
int ed_proto_parse(const char *line, size_t len, json_t **msg, json_t **id,
		   const ed_op **op, ed_err *err, char *errmsg, size_t errlen);

/* {"id":id,"event":name, ...fields}.  Steals fields (an object or NULL);
 * borrows id (NULL gives "id":null). */
json_t *ed_proto_event(json_t *id, const char *name, json_t *fields);
/* {"id":id,"event":"error","error":{"code":…,"message":…}} */
json_t *ed_proto_error_event(json_t *id, ed_err e, const char *message);
/* Serialises ev compactly with a trailing '\n'; caller frees. */
char *ed_proto_dump(json_t *ev, size_t *len);

#endif
