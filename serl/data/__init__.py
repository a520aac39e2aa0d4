"""Replay buffers, samplers, batches and dataset diagnostics."""
