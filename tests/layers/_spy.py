"""A layer for tests that records what the network asked of it."""


class Spy:
    """A plain (non-attrs) layer without params that records the need_g_x it was asked for."""

    def __init__(self):
        self.asked = []

    def forward(self, x):
        return x

    def vjp(self, x, need_g_x=True):
        self.asked.append(need_g_x)
        return x, lambda g: (g if need_g_x else None, self)
