"""GPU kernels of the engine (Triton). Import a kernel module only where Triton is installed: the CPU never needs one."""
