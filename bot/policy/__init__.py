"""The approval policy: ``rules`` (what an approval is held to) and ``parse`` (the file reader)."""
