# engine-kernels.mk: filled in by its module.
