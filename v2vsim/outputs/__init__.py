"""What a run leaves behind: the results directory (atomic, with a manifest), figures, report.

Outputs read result frames; they never import the engine's internals.
"""
