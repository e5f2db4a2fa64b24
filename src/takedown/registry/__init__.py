"""The register of restricted items: add, import, export, list, delist."""
