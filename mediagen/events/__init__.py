"""Event buses: "job X has a new event" between processes; lossy by design, the store fills gaps."""
