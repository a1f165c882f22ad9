"""The base layer: errors and exit codes, the atomic writer, ranks, the run's lock and record, stop signals. Imports nothing else of frame."""
