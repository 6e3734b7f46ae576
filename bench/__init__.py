"""ticker's benchmarks: a load generator, a raw-gevent ceiling, and the runs that compare them."""
