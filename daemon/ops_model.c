/* ops_model.c - the model engramd serves, and the ops that need only it:
 * model, tokenize, detokenize.  The model is loaded once at start, before
 * the socket opens, and is read-only afterwards: workers share it without
 * locks (engine.h: an eng_vocab may be used by any number of threads). */
#include "config.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "engine.h"
#include "engramd.h"
#include "text.h"

#define ED_DEFAULT_MODEL "gemma-3-270m-q4_k_m.gguf"
/* Ids per "tokens" event: events stay well under a client's line limit. */
#define ED_TOKENS_PER_EVENT 8192

static struct {
	eng_model *model;	/* owned; NULL when none is loaded */
	char *path;		/* owned */
} M;

/* Packs what the pack setting names before any forward pass opens (the
 * model is read-only afterwards).  A failure costs speed, not service:
 * logged, and the file's matrices serve. */
static void model_pack(const ed_settings *s)
{
	size_t bytes = 0;
	double t0 = ed_now_s();
	int rc;

	if (!s->pack)
		return;
	rc = eng_model_pack(M.model, (unsigned)s->pack, s->threads, &bytes);
	if (rc < 0)
		ed_log(ED_LOG_WARN, "model: not packed (%s); decode reads the "
		       "file's matrices", eng_strerror(rc));
	else if (!bytes)
		ed_log(ED_LOG_INFO, "model: nothing packed (no AVX-512 VNNI "
		       "kernels for its matrices here)");
	else
		ed_log(ED_LOG_INFO, "model: packed for decode (pack=%d): %.1f MB "
		       "in %.0f ms", s->pack, bytes / 1e6, (ed_now_s() - t0) * 1e3);
}

int ed_model_load(const ed_settings *s, char *err, size_t errlen)
{
	char path[4096];
	if (s->model && !strcmp(s->model, "none"))
		return 0;
	if (s->model)
		snprintf(path, sizeof(path), "%s", s->model);
	else
		snprintf(path, sizeof(path), "%s/models/%s", s->data_dir, ED_DEFAULT_MODEL);
	char msg[512] = "";
	int rc = eng_model_open(path, &M.model, msg, sizeof(msg));
	if (rc < 0) {
		snprintf(err, errlen, "cannot load model %s: %s%s%s", path,
			 *msg ? msg : eng_strerror(rc),
			 s->model ? "" : " (scripts/quickstart installs the default model; "
					 "or give one with --model, or --model none)", "");
		M.model = NULL;
		return rc;
	}
	M.path = strdup(path);
	const eng_model_info *mi = eng_model_info_get(M.model);
	ed_log(ED_LOG_INFO, "model %s (%s, %s, %llu parameters, fingerprint %s)",
	       path, mi->name, mi->arch, (unsigned long long)mi->n_params, mi->fingerprint);
	model_pack(s);
	return 0;
}

void ed_model_unload(void)
{
	eng_model_close(M.model);
	M.model = NULL;
	free(M.path);
	M.path = NULL;
}

const eng_model *ed_model(void)
{
	return M.model;
}

/* A short description for `status`, or null. */
json_t *ed_model_brief(void)
{
	if (!M.model)
		return json_null();
	const eng_model_info *mi = eng_model_info_get(M.model);
	return json_pack("{s:s,s:s,s:s,s:s}", "name", mi->name, "arch", mi->arch,
			 "path", M.path, "fingerprint", mi->fingerprint);
}

int ed_model_need(ed_req *r)
{
	if (M.model)
		return 1;
	ed_req_fail(r, ED_ERR_NO_MODEL, "engramd runs without a model (--model none)");
	return 0;
}

static void op_model(ed_req *r)
{
	if (!ed_model_need(r)) {
		ed_req_finish(r);
		return;
	}
	const eng_model_info *mi = eng_model_info_get(M.model);
	const eng_hparams *hp = eng_model_hparams(M.model);
	json_t *types = json_array();
	for (size_t i = 0; i < mi->n_types; i++)
		json_array_append_new(types, json_pack("{s:s,s:i}",
			"type", eng_type_name(mi->types[i].type),
			"tensors", (int)mi->types[i].n_tensors));
	r->result = json_pack("{s:s,s:s,s:s,s:I,s:I,s:I,s:I,s:s,s:o,s:{s:i,s:i,s:i,s:i,s:i,s:i,s:i}}",
		"name", mi->name, "arch", mi->arch, "path", M.path,
		"parameters", (json_int_t)mi->n_params,
		"context_length", (json_int_t)mi->n_ctx_train,
		"vocab_size", (json_int_t)mi->n_vocab,
		"file_size", (json_int_t)mi->file_size,
		"fingerprint", mi->fingerprint,
		"types", types,
		"hparams",
		  "layers", (int)hp->n_layer, "embedding", (int)hp->n_embd,
		  "heads", (int)hp->n_head, "kv_heads", (int)hp->n_head_kv,
		  "head_dim", (int)hp->head_dim_k, "ffn", (int)hp->n_ff,
		  "sliding_window", (int)hp->sliding_window);
	if (!r->result)
		ed_req_fail(r, ED_ERR_INTERNAL, "cannot describe the model");
	ed_req_finish(r);
}

/* A token's piece as a JSON string, or its bytes as base64 when they are
 * not UTF-8 on their own (a byte token, or half of a character). */
static json_t *piece_json(const eng_vocab *v, int32_t id)
{
	char buf[256], *p = buf;
	size_t len = 0;
	json_t *j;
	if (eng_token_to_piece(v, id, 1, buf, sizeof(buf), &len) < 0)
		return json_null();
	if (len > sizeof(buf)) {
		p = malloc(len);
		if (!p || eng_token_to_piece(v, id, 1, p, len, &len) < 0) {
			free(p);
			return json_null();
		}
	}
	if (ed_utf8_valid(p, len)) {
		j = json_stringn(p, len);
	} else {
		char *b = malloc(ed_b64_encoded_len(len) + 1);
		ed_b64_encode((unsigned char *)p, len, b);
		j = json_pack("{s:s%}", "bytes", b, ed_b64_encoded_len(len));
		free(b);
	}
	if (p != buf)
		free(p);
	return j;
}

static void tokenize_worker(ed_req *r)
{
	const eng_vocab *v = eng_model_vocab(M.model);
	int add = ed_req_arg_bool(r, "add_special", 1);
	int special = add < 0 ? -1 : ed_req_arg_bool(r, "parse_special", 0);
	int pieces = special < 0 ? -1 : ed_req_arg_bool(r, "pieces", 0);
	int32_t *ids = NULL;
	size_t n = 0;

	if (pieces < 0)
		return;
	if (!r->input && !json_object_get(r->msg, "text") && !json_object_get(r->msg, "data")) {
		ed_req_fail(r, ED_ERR_MISSING_FIELD, "missing field 'text' (or 'data')");
		return;
	}
	int rc = eng_tokenize(v, (const char *)r->input, r->input_len,
			      (add ? ENG_TOK_ADD_SPECIAL : 0) | (special ? ENG_TOK_PARSE_SPECIAL : 0),
			      &ids, &n);
	if (rc < 0) {
		ed_req_fail(r, rc == ENG_ERANGE ? ED_ERR_INVALID_ARGUMENT : ED_ERR_INTERNAL,
			    "cannot tokenize: %s", eng_strerror(rc));
		return;
	}
	for (size_t i = 0; i < n; i += ED_TOKENS_PER_EVENT) {
		if (ed_req_is_cancelled(r)) {
			free(ids);
			ed_req_fail(r, ED_ERR_CANCELLED, "cancelled");
			return;
		}
		size_t k = n - i < ED_TOKENS_PER_EVENT ? n - i : ED_TOKENS_PER_EVENT;
		json_t *a = json_array(), *p = pieces ? json_array() : NULL;
		for (size_t j = 0; j < k; j++) {
			json_array_append_new(a, json_integer(ids[i + j]));
			if (p)
				json_array_append_new(p, piece_json(v, ids[i + j]));
		}
		json_t *ev = json_pack("{s:I,s:o}", "offset", (json_int_t)i, "ids", a);
		if (p)
			json_object_set_new(ev, "pieces", p);
		ed_req_emit(r, "tokens", ev);
	}
	free(ids);
	r->result = json_pack("{s:I,s:I}", "n_tokens", (json_int_t)n,
			      "n_bytes", (json_int_t)r->input_len);
}

static void detokenize_worker(ed_req *r)
{
	const eng_vocab *v = eng_model_vocab(M.model);
	json_t *ids = json_object_get(r->msg, "ids");
	int special = ed_req_arg_bool(r, "special", 0);
	char *out = NULL;
	size_t len = 0, cap = 0;
	size_t i;
	json_t *idv;

	if (special < 0)
		return;
	if (!ids) {
		ed_req_fail(r, ED_ERR_MISSING_FIELD, "missing field 'ids'");
		return;
	}
	if (!json_is_array(ids)) {
		ed_req_fail(r, ED_ERR_INVALID_ARGUMENT, "'ids' must be an array of token ids");
		return;
	}
	json_array_foreach(ids, i, idv) {
		json_int_t id = json_integer_value(idv);
		if (!json_is_integer(idv) || id < 0 || id >= (json_int_t)eng_vocab_size(v)) {
			free(out);
			ed_req_fail(r, ED_ERR_INVALID_ARGUMENT,
				    "ids[%zu] is not a token id (0 to %u)", i, eng_vocab_size(v) - 1);
			return;
		}
		size_t k = 0;
		for (;;) {
			int rc = eng_token_to_piece(v, (int32_t)id, special, out + len, cap - len, &k);
			if (rc < 0) {
				free(out);
				ed_req_fail(r, ED_ERR_INTERNAL, "%s", eng_strerror(rc));
				return;
			}
			if (k <= cap - len)
				break;
			cap = (cap + k) * 2;
			char *n = realloc(out, cap);
			if (!n) {
				free(out);
				ed_req_fail(r, ED_ERR_INTERNAL, "out of memory");
				return;
			}
			out = n;
		}
		len += k;
	}
	if (ed_utf8_valid(out ? out : "", len)) {
		r->result = json_pack("{s:s%}", "text", out ? out : "", len);
	} else {
		char *b = malloc(ed_b64_encoded_len(len) + 1);
		ed_b64_encode((unsigned char *)out, len, b);
		r->result = json_pack("{s:s%}", "data", b, ed_b64_encoded_len(len));
		free(b);
	}
	free(out);
}

static void op_tokenize(ed_req *r)
{
	if (!ed_model_need(r))
		ed_req_finish(r);
	else
		ed_req_defer(r, tokenize_worker);
}

static void op_detokenize(ed_req *r)
{
	if (!ed_model_need(r))
		ed_req_finish(r);
	else
		ed_req_defer(r, detokenize_worker);
}

const ed_op ed_ops_model[] = {
	{ "model", op_model, NULL },
	{ "tokenize", op_tokenize, NULL },
	{ "detokenize", op_detokenize, NULL },
	{ NULL, NULL, NULL },
};
