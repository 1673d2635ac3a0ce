/* proto.c - requests in, events out.  Every check a request line can fail
 * lives here, so that each failure has one error code (docs/PROTOCOL.md). */
#include "config.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "proto.h"
#include "text.h"

static const char *err_codes[] = {
#define ED__S(name, str) str,
	ED_ERROR_MAP(ED__S)
#undef ED__S
};

const char *ed_err_code(ed_err e)
{
	return (unsigned)e < ED_ERR__COUNT ? err_codes[e] : "internal";
}

static int is_blank(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r')
			return 0;
	return 1;
}

int ed_proto_parse(const char *line, size_t len, json_t **msg, json_t **id,
		   const ed_op **op, ed_err *err, char *errmsg, size_t errlen)
{
	json_error_t je;
	json_t *m, *o;

	*msg = *id = NULL;
	*op = NULL;
	if (is_blank(line, len))
		return 1;
	if (!ed_utf8_valid(line, len)) {
		*err = ED_ERR_INVALID_UTF8;
		snprintf(errmsg, errlen, "request is not valid UTF-8");
		return -1;
	}
	if (memchr(line, 0, len)) {
		*err = ED_ERR_INVALID_JSON;
		snprintf(errmsg, errlen, "request contains a NUL byte");
		return -1;
	}
	m = json_loadb(line, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &je);
	if (!m) {
		*err = ED_ERR_INVALID_JSON;
		snprintf(errmsg, errlen, "invalid JSON at column %d: %s", je.column,
		    strstr(je.text, "JSON_ALLOW_NUL") ? "\\u0000 in a string "
		    "(send such input as 'data', base64)" : je.text);
		return -1;
	}
	*msg = m;
	if (!json_is_object(m)) {
		*err = ED_ERR_BAD_REQUEST;
		snprintf(errmsg, errlen, "a request must be a JSON object");
		return -1;
	}
	json_t *i = json_object_get(m, "id");
	if (i && (json_is_string(i) || json_is_integer(i)))
		*id = i;
	if (!i) {
		*err = ED_ERR_MISSING_FIELD;
		snprintf(errmsg, errlen, "missing field 'id'");
		return -1;
	}
	if (!*id) {
		*err = ED_ERR_BAD_REQUEST;
		snprintf(errmsg, errlen, "'id' must be a string or an integer");
		return -1;
	}
	o = json_object_get(m, "op");
	if (!o) {
		*err = ED_ERR_MISSING_FIELD;
		snprintf(errmsg, errlen, "missing field 'op'");
		return -1;
	}
	if (!json_is_string(o)) {
		*err = ED_ERR_BAD_REQUEST;
		snprintf(errmsg, errlen, "'op' must be a string");
		return -1;
	}
	*op = ed_op_find(json_string_value(o));
	if (!*op) {
		*err = ED_ERR_UNKNOWN_OP;
		snprintf(errmsg, errlen, "unknown op '%.64s'", json_string_value(o));
		return -1;
	}
	return 0;
}

json_t *ed_proto_event(json_t *id, const char *name, json_t *fields)
{
	json_t *ev = json_object();
	if (!ev) {
		json_decref(fields);
		return NULL;
	}
	json_object_set(ev, "id", id ? id : json_null());
	json_object_set_new(ev, "event", json_string(name));
	if (fields) {
		json_object_update_missing(ev, fields);
		json_decref(fields);
	}
	return ev;
}

json_t *ed_proto_error_event(json_t *id, ed_err e, const char *message)
{
	json_t *err = json_pack("{s:s,s:s}", "code", ed_err_code(e), "message",
				message ? message : "");
	if (!err)	/* message was not UTF-8; never expected, but keep a reply */
		err = json_pack("{s:s,s:s}", "code", ed_err_code(e), "message", "");
	return ed_proto_event(id, "error", json_pack("{s:o}", "error", err));
}

char *ed_proto_dump(json_t *ev, size_t *len)
{
	char *s = json_dumps(ev, JSON_COMPACT);
	if (!s)
		return NULL;
	size_t n = strlen(s);
	char *r = realloc(s, n + 2);
	if (!r) {
		free(s);
		return NULL;
	}
	r[n] = '\n';
	r[n + 1] = 0;
	*len = n + 1;
	return r;
}
