"""The ticket services every caller uses (pipeline, scheduler, maildctl): ticket operations,
merge, split, replies, notices, statuses, escalations, auto-close, reports, import/export."""
