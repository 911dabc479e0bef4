"""The workflows on Temporal's test servers (time-skipping or dev), with fake activities under the
real names; the captured histories that must keep replaying."""
