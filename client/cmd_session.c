/* cmd_session.c - engramctl commands about sessions, ingest jobs and the
 * store. */
#include "config.h"
#include <stdio.h>
#include "ectl.h"

const ectl_command ectl_cmds_session[] = {
	{ NULL, NULL, NULL, NULL, NULL },
};
