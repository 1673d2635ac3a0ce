# client/: engramctl.
bin_PROGRAMS += engramctl
engramctl_SOURCES = \
	%reldir%/ectl.h \
	%reldir%/conn.c \
	%reldir%/output.c \
	%reldir%/cmd_daemon.c \
	%reldir%/cmd_model.c \
	%reldir%/cmd_session.c \
	%reldir%/cmd_generate.c \
	%reldir%/engramctl.c \
	daemon/frame.h daemon/frame.c \
	daemon/text.h daemon/text.c \
	daemon/paths.h daemon/paths.c
engramctl_CFLAGS = $(AM_CFLAGS) $(JANSSON_CFLAGS)
engramctl_LDADD = $(JANSSON_LIBS)
