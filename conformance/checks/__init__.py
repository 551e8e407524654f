"""Checks of the conformance suite, grouped by what they read: files, hosts, a live deployment."""
