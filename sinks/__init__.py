"""Sinks: the Redis (or embedded SQLite) priority feed, the SQL store and cursor stores."""
