"""Third-party code kept verbatim (see each file's header for its source and licence); imports nothing of ours."""
