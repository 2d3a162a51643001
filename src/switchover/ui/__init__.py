"""What people see: the live view of a run."""
