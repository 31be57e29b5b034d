"""`portway drill`: failover drills against a live gateway (see `portway.drill.run`)."""
