"""Adapters between toolgym envs and RL trainers, one module per trainer; each imports its trainer lazily."""
