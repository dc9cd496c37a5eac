"""Plain data that flows between the stages: observations in, health snapshots out."""
