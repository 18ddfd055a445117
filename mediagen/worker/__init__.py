"""Workers: the Taskiq task, the job runner, the reconciler."""
