"""The engine: one replication of a scenario as a SimPy model, and replications in workers."""
