"""Renderers of portlib's values: JSON, nmap XML, grepable and human tables."""
