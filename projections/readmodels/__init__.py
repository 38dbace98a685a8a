"""The read models: one module per model (its tables, its event handlers, its queries) and the registry of them all."""
