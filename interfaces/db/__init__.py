"""Database adapters: where PostgreSQL lives, the event store recorder, pools, operational tables."""
