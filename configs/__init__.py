"""Run configs (ml_collections files with get_config(arg)); importable so they can share helpers."""
