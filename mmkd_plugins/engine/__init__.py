from . import hooks, loops, schedulers  # noqa: F401
