"""Configuration: the config folder's files, validated with line numbers, as frozen models; names and paths."""
