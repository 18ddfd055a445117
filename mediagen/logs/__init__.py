"""Structured logs: the context every line carries (request id, job, tenant, attempt), request
ids, and the JSON or text format each process writes to stderr."""
