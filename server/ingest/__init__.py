"""Bulk ingest: sources (JSON Lines, Parquet, .npy), the batch pipeline, and persisted, resumable jobs.

    rows.py      what every source shares: the resume cursor, the field map, a decoded chunk
    sources.py   read a file (JSON Lines, Parquet) in chunks from a resumable cursor; npy_source.py: .npy
    spec.py      a job's source resolved against its collection before it runs
    batch.py     validate a chunk's rows and embed its texts (bad rows become errors, not failures)
    pipeline.py  read -> worker pool -> ordered commit, with a bounded window (back-pressure)
    jobs.py      the job record and its atomic JSON file
    runner.py    queue, run, cancel and resume jobs on threads owned by the app's lifespan

The server wires it together: `server/api/jobs.py` submits, `server/app.py` starts and stops the runner.
"""
