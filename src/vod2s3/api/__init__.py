"""The signed JSON API (SPEC §2)."""
