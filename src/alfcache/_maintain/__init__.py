"""Maintenance verbs over existing tables: update, verify, info, prune, merge."""
