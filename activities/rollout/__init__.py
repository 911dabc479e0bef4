"""Rollout activities: the plan, ArgoCD syncs and rollbacks, and the wave checks (see `activities.py`)."""
