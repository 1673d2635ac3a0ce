/* ops_session.c - the protocol's ops for sessions, ingest jobs and the store. */
#include "config.h"
#include "engramd.h"

const ed_op ed_ops_session[] = {
	{ NULL, NULL, NULL },
};
