"""Tests of one module or pure function at a time: no server, no process, no network."""
