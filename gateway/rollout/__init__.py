"""Progressive rollouts across clusters: a pure state machine, its registry record, its runner."""
