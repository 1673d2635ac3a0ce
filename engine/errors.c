/* errors.c - text for the engine's error codes (ENG_ERRNO_MAP in engine.h). */
#include "config.h"
#include <string.h>
#include "engine.h"

const char *eng_strerror(int err)
{
	switch (err) {
#define ENG__STR(code, name, msg) case code: return msg;
	ENG_ERRNO_MAP(ENG__STR)
#undef ENG__STR
	}
	if (err < 0 && err > -1000)
		return strerror(-err);
	return "unknown error";
}

const char *eng_errname(int err)
{
	switch (err) {
#define ENG__NAME(code, name, msg) case code: return #name;
	ENG_ERRNO_MAP(ENG__NAME)
#undef ENG__NAME
	}
	return "ENG_EUNKNOWN";
}

const char *eng_version(void)
{
	return PACKAGE_VERSION;
}
