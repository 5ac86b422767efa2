"""What machine a measurement ran on, for the results files of the demo and the benchmarks."""
import platform


def cpu_model() -> str:
    """The CPU's model name (``model name`` of /proc/cpuinfo), else what :mod:`platform` knows."""
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
