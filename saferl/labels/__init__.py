"""The label store: the overseer's decisions on disk, append-only and crash-safe."""
