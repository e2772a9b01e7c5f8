"""The database: every table, the store, and the record writer."""
