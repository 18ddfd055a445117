"""Receiving Replicate's completion webhooks: verify them, drop repeats, wake the job's worker."""
