"""The file formats and what every stage shares about them, importing nothing of ours
but leaf helpers (no torch, no rich): the profile, plan and baseline documents and their
atomic, validated I/O; the op vocabulary; the trace as numpy arrays (``trace``), the
live-bytes arithmetic over its clocks (``timeline``) and the roofline classification of
its ops (``roofline``)."""
