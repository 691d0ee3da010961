"""The pure core: records, validation and statistics. No pytest, no disk."""
