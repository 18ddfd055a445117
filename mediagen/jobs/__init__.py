"""The job lifecycle: states, validation, persistence."""
