/* errors.c - text for the ingest module's error codes (ING_ERRNO_MAP). */
#include "config.h"
#include <string.h>
#include "ingest.h"

const char *ing_strerror(int err)
{
	switch (err) {
#define ING__STR(code, name, msg) case code: return msg;
	ING_ERRNO_MAP(ING__STR)
#undef ING__STR
	}
	if (err < 0 && err > -1000)
		return strerror(-err);
	return "unknown error";
}
