"""The Nestor engine: collections, storage and ANN backends. Knows nothing of HTTP.

Importing it changes nothing in the process: the thread-pool defaults are set by whoever starts the
process, through `index.runtime.configure_threads()`.
"""
