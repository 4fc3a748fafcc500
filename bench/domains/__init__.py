"""Symbolic domains: the ground-truth simulators that planning workloads render into images and
validate plans against (never the learned model). Pure numpy; imports nothing else of the project."""
