# man/: manual pages, installed by make install and linted by the tests.
dist_man_MANS += man/engramd.8 man/engramctl.1 man/engramd.conf.5
