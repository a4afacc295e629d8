"""saferl: safe reinforcement learning with human intervention (HIRL) on Atari."""

__version__ = "0.1.0"
