"""The trained miniature Pyramid-Flow: the tiny architecture trained on the procedural world (issue 3)."""
