"""The Hexagon target: device profiles now; export, splitting, compilation and AI Hub jobs to follow."""
