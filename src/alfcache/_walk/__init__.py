"""The walk: where rows are born, the threads that list folders, and the backends
(worker processes on this machine, Dask) that run it."""
