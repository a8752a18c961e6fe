"""Everything that exists only to make XLA:CPU fast, in one place.

Nothing here runs unless the runtime policy (`jaxal/runtime.py`) asks for it, which by
default it does on the CPU backend only; GPUs and TPUs run stock Flax/XLA ops.

* `convs`: im2col and per-pixel-matmul convolutions for tiny maps, fenced conv inputs;
* `batch_norm`: BatchNorm's batch sums as products with a ones vector;
* `pooling`: max-pool backward passes without select-and-scatter;
* `depthwise`: narrow depthwise convolutions as dense convolutions with diagonal kernels;
* `process`: process settings (huge pages, resident malloc buffers, XLA:CPU compiler options).
"""
