"""Orchestration: the one corridor every run walks, JSON jobs (the Runner), sweep bookkeeping."""
