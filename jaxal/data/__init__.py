"""Data: sources into in-memory arrays (`datasets`), pool bookkeeping (`pool`),
preprocessing (`pipeline`) and augmentation (`augment`)."""
