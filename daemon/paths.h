/* paths.h - default locations (XDG base directories) and mkdir -p.
 * Used by engramd and engramctl.  Every returned string is malloc'd and
 * owned by the caller; NULL means out of memory. */
#ifndef ENGRAM_DAEMON_PATHS_H
#define ENGRAM_DAEMON_PATHS_H

#include <sys/types.h>

/* $XDG_DATA_HOME/engram, or ~/.local/share/engram. */
char *ed_paths_data_default(void);
/* $XDG_RUNTIME_DIR/engram/engramd.sock, or /tmp/engram-$UID/engramd.sock. */
char *ed_paths_socket_default(void);
/* $XDG_CONFIG_HOME/engram/engramd.conf, or ~/.config/engram/engramd.conf. */
char *ed_paths_config_default(void);
/* mkdir -p; directories it creates get mode.  0 or a negative errno. */
int ed_mkdirs(const char *path, mode_t mode);

#endif
