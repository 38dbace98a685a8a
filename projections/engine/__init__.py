"""The projection engine: reads the event log, feeds read models in batches, tracks positions, waits, rebuilds. Imports no read model."""
