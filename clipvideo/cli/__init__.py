"""The command-line layer: the shape every stage entry point shares (stage), and the project's commands
(`python -m clipvideo doctor | check | experiments`). Nothing in the library imports it."""
