"""The cluster engine: ``detect`` and ``eval`` over a Ray cluster (Ray Data), with the same
results, journal and resume as a local run. :mod:`.engine` is the pipeline (read tasks, an actor
pool that builds each Detector once), :mod:`.jobs` the two jobs over it."""
