"""Backends: each turns a Schedule into something that runs."""
