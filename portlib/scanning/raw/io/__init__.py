"""The raw engine's system-facing parts: sockets, rings and the forked send workers."""
