"""Report queries over read models and the event log: billing, reconcile, export, replay."""
