"""The mark of a checkpoint written by ser.train; its own module so readers need not import Lightning."""

CHECKPOINT_FORMAT = "ser-checkpoint-v1"
