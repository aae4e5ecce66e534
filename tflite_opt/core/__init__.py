"""Core: what every stage builds on. Core modules import only core modules."""
