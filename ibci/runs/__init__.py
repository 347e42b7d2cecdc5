"""Running cells: config checks, run directories and records, the runner, and loading finished runs."""
