# engine kernels: quantized formats, matrix products, thread pool.
