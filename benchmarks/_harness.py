"""What the benchmarks share: the instruction-set environments and the CPU's name (imported as a sibling:
``python benchmarks/<script>.py`` puts this folder on ``sys.path``)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# ``avx2`` makes torch run the kernels an AVX2-only x86-64 CPU would, whatever this CPU supports.
ISA_ENV: dict[str, dict[str, str]] = {
    "native": {},
    "avx2": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"},
}


def cpu_model() -> str:
    """``lscpu``'s model name, from /proc/cpuinfo."""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown CPU"


def sync(device: object) -> None:
    """Wait for a CUDA device's queued work (a timer must not stop before the kernels end); a no-op
    on the CPU. Takes a ``torch.device``; torch is imported only here, so ``spread.py`` needs none."""
    import torch

    if isinstance(device, torch.device) and device.type == "cuda":
        torch.cuda.synchronize(device)
