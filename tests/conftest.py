"""Suite-wide set-up: the process gets the thread-pool defaults a server gets at start-up."""

from __future__ import annotations

from index.runtime import configure_threads

# At import, not in pytest_configure: pytest imports the conftests of the paths it is given (which
# import server.app, and so faiss) before it calls any hook. This file is imported first. The
# variables also reach the servers that tests start as subprocesses.
configure_threads()
