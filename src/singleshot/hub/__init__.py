"""Known models (the zoo's files and the bundled ones) and verified, resumable downloads into the cache."""
