"""Incident activities: triage, recall, propose, notify, record (see `activities.py`)."""
