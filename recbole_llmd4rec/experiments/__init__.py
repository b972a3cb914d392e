"""The side-by-side comparison (``run_llmd4rec.py --compare``), by job: ``methods`` (what is
compared, and how the rows pair up), ``child`` (one method and seed in a fresh interpreter, and its
record), ``tables`` (means, spreads and the Markdown/CSV tables) and ``runner`` (the comparison:
runs in dependency order, reuse, resume, claims, status)."""
