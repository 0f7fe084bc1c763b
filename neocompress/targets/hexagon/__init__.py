"""The Hexagon target: device profiles, the static op check, splitting, QNN HTP compilation and AI Hub jobs."""
