"""The base layer: errors and exit codes, the one atomic writer, reading state files back, ranks, the run's lock and record, stop signals. Imports nothing else of frame."""
