"""Work the process owns in the background: the outbox's delivery, deadlines, lease keeping,
retention, and the task set.
"""
