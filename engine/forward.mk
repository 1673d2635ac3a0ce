# forward.mk: filled in by its module.
