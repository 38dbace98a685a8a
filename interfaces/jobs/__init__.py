"""Background work inside `hostplane serve`: scheduled jobs, leader election, webhook delivery."""
