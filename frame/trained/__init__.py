"""After training: a finished run read back (load, eval, predict, export) and the runs under outputs/ (table, plots)."""
