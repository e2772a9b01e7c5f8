"""Fuzz harnesses (atheris) and their shared targets (issue 15); see docs/reliability.md."""
