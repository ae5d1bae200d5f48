"""The fictional-knowledge experiment (issue 19): corpus generator."""
