"""Small helpers shared by the unit tests."""
import torch


def gen(seed: int) -> torch.Generator:
    """A CPU random generator with a fixed seed (tests draw their data from it)."""
    return torch.Generator().manual_seed(seed)
