"""Experiment runner: grids of bundle x architecture x weight source x strategy x seed, and their leaderboard."""
