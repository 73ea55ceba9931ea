"""The one exception type users see."""


class GGraphError(Exception):
    """A wrong shape, type or argument, a failed compute, a bad file.

    Raised at graph build time for anything the DSL can check, so that nothing
    a user writes in Python reaches the C kernels in a state they can't handle.
    """
