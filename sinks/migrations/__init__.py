"""Versioned schema migrations of SqlStore, as SQL files (a package so they ship in the wheel)."""
