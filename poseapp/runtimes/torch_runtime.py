"""The PyTorch runtime: our own network modules, eager, in fp32, bf16 (autocast) or fp16 (CUDA)."""
from __future__ import annotations

from poseapp.runtimes.base import as_outputs


class TorchRuntime:
    """A ``torch.nn.Module`` as a runtime.

    Args:
        module: the network (its outputs: a tensor, or SimCC's (x, y) pair).
        device: torch device string.
        precision: ``fp32``; ``bf16`` (autocast: convolutions and matrix products in bf16, the rest fp32);
            ``fp16`` (the whole module in half precision, CUDA only).
        threads: CPU threads for torch (``torch.set_num_threads``, a process-wide setting); None leaves it.
    """

    backend = "torch"

    def __init__(self, module, *, device: str = "cpu", precision: str = "fp32", threads: int | None = None) -> None:
        import torch

        if threads is not None and torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
        self.device = str(device)
        self.precision = precision
        self.module = module.to(torch.device(device)).eval()
        if precision == "fp16":
            self.module = self.module.half()
        self._device_type = torch.device(device).type

    def __call__(self, x) -> tuple:
        import torch

        with torch.inference_mode():
            if self.precision == "fp16":
                return tuple(t.float() for t in as_outputs(self.module(x.half())))
            if self.precision == "bf16":
                with torch.autocast(self._device_type, dtype=torch.bfloat16):
                    return tuple(t.float() for t in as_outputs(self.module(x)))
            return tuple(t.float() for t in as_outputs(self.module(x)))

    def __repr__(self) -> str:
        return f"TorchRuntime({type(self.module).__name__}, device={self.device}, precision={self.precision})"
