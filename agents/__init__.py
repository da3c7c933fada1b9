"""Reinforcement-learning agents for OxideComposition-v0."""
