"""pytest plugin and helpers for asserting what a code path costs."""
