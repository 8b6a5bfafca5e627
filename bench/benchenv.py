"""benchenv.py: what the benchmarks print beside their figures: the CPU model and the
load average (a speed figure holds for the machine and the load it was taken on)."""
import os
import platform


def cpu_model():
    """/proc/cpuinfo's model name, or the platform's processor name elsewhere"""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def load_average():
    """the 1-, 5- and 15-minute load averages as one string, "?" when unknown"""
    try:
        return "%.2f %.2f %.2f" % os.getloadavg()
    except OSError:
        return "?"
