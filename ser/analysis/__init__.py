"""Analysis of run records: statistics of a sweep (stats), wording (words), reports (render), stories (loss_claim)."""
