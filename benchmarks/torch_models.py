"""PyTorch twins of jaxal models, for the comparison columns of `train_step.py`.

Same layers, widths and FLOPs as jaxal's resnet_grid A(blocks, stacks) (basic blocks),
preact_resnet20 and small_cnn; bias-free convs before BatchNorm as in jaxal. Padding of
stride-2 3x3 convs is symmetric here (XLA's "SAME" pads (0, 1)): same output sizes and FLOPs.
Needs `torch` (a benchmark-only dependency, never a runtime one).
"""

import json
import os
import sys
import time

import numpy as np

if os.environ.get("JAXAL_KEEP_BUFFERS") == "1":  # train_step.py --malloc resident: the same settings as JAX's process
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  from jaxal.cpu import process as cpu_process  # noqa: E402  (stdlib only; before torch starts its threads)
  cpu_process.keep_buffers_resident()

import torch  # noqa: E402
from torch import nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402


def conv3(cin, cout, stride=1):
  return nn.Conv2d(cin, cout, 3, stride, 1, bias=False)


class Basic(nn.Module):
  """conv3x3-BN-ReLU, conv3x3-BN, add (projected) shortcut, ReLU."""

  def __init__(self, cin, cout, stride):
    super().__init__()
    self.c1, self.b1 = conv3(cin, cout, stride), nn.BatchNorm2d(cout, momentum=0.1, eps=1e-5)
    self.c2, self.b2 = conv3(cout, cout), nn.BatchNorm2d(cout)
    self.proj = None
    if stride != 1 or cin != cout:
      self.proj = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

  def forward(self, x):
    y = self.b2(self.c2(F.relu(self.b1(self.c1(x)))))
    return F.relu(y + (self.proj(x) if self.proj is not None else x))


class ResNetGrid(nn.Module):
  """A(blocks, stacks): conv3x3-BN-ReLU-maxpool3x3/2, stacks of basic blocks, pool, dense."""

  def __init__(self, blocks, stacks, width=64, classes=10, cin=3):
    super().__init__()
    self.stem = nn.Sequential(conv3(cin, width), nn.BatchNorm2d(width), nn.ReLU(), nn.MaxPool2d(3, 2, 1))
    layers, c = [], width
    for s in range(stacks):
      for b in range(blocks):
        layers.append(Basic(c, width * 2**s, 2 if (s > 0 and b == 0) else 1))
        c = width * 2**s
    self.body = nn.Sequential(*layers)
    self.fc = nn.Linear(c, classes)

  def forward(self, x):
    return self.fc(self.body(self.stem(x)).mean((2, 3)))


class PreactBasic(nn.Module):
  """BN-ReLU-conv3x3, BN-ReLU-conv3x3, plus the option-A shortcut."""

  def __init__(self, cin, cout, stride):
    super().__init__()
    self.b1, self.c1 = nn.BatchNorm2d(cin), conv3(cin, cout, stride)
    self.b2, self.c2 = nn.BatchNorm2d(cout), conv3(cout, cout)
    self.stride, self.pad = stride, cout - cin

  def forward(self, x):
    y = self.c1(F.relu(self.b1(x)))
    y = self.c2(F.relu(self.b2(y)))
    s = x[:, :, ::self.stride, ::self.stride] if self.stride > 1 else x
    if self.pad:
      s = F.pad(s, (0, 0, 0, 0, self.pad // 2, self.pad - self.pad // 2))
    return y + s


class PreactResNet(nn.Module):
  def __init__(self, n=3, width=16, classes=10):
    super().__init__()
    self.stem = conv3(3, width)
    layers, c = [], width
    for s in range(3):
      for b in range(n):
        layers.append(PreactBasic(c, width * 2**s, 2 if (s > 0 and b == 0) else 1))
        c = width * 2**s
    self.body = nn.Sequential(*layers)
    self.bn = nn.BatchNorm2d(c)
    self.fc = nn.Linear(c, classes)

  def forward(self, x):
    return self.fc(F.relu(self.bn(self.body(self.stem(x)))).mean((2, 3)))


class SmallCNN(nn.Module):
  """conv3x3-BN-ReLU-pool twice, dense(embed)-ReLU, dense."""

  def __init__(self, shape=(28, 28, 1), width=32, embed=128, classes=10):
    super().__init__()
    h, layers, c = shape[0], [], shape[2]
    for f in (width, 2 * width):
      layers += [conv3(c, f), nn.BatchNorm2d(f), nn.ReLU()]
      if h > 2:
        layers.append(nn.MaxPool2d(2))
        h //= 2
      c = f
    self.body = nn.Sequential(*layers)
    self.embed = nn.Linear(c * h * h, embed)
    self.fc = nn.Linear(embed, classes)

  def forward(self, x):
    return self.fc(F.relu(self.embed(self.body(x).flatten(1))))


def create(name, options, shape):
  if name == "resnet_grid":
    return ResNetGrid(options["blocks"], options["stacks"], options["width"], cin=shape[2])
  if name == "preact_resnet20":
    return PreactResNet(3)
  if name == "small_cnn":
    return SmallCNN(shape)
  return None


def step_functions(name, options, x_uint8, y, threads=2):
  """(train step, eval step) on the batch, each a no-argument callable; None for unknown models."""
  torch.set_num_threads(threads)
  torch.manual_seed(0)
  model = create(name, options, x_uint8.shape[1:])
  if model is None:
    return None
  opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=1e-3)
  xb = torch.from_numpy(np.ascontiguousarray(x_uint8.transpose(0, 3, 1, 2)))
  yb = torch.from_numpy(y.astype(np.int64))

  def train():
    model.train()
    x = (xb.float() - 127.5) / 64.0  # the preprocessing jaxal's step also runs
    loss = F.cross_entropy(model(x), yb)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss.item()

  def evaluate():
    model.eval()
    with torch.no_grad():
      return model((xb.float() - 127.5) / 64.0).sum().item()

  return train, evaluate


def bench(name, options, x_uint8, y, repeats, threads=2):
  """[(median seconds, first-call seconds)] for the train and eval steps; None for unknown models."""
  fns = step_functions(name, options, x_uint8, y, threads)
  if fns is None:
    return None
  out = []
  for fn in fns:
    t0 = time.perf_counter()
    fn()
    first = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
      t0 = time.perf_counter()
      fn()
      times.append(time.perf_counter() - t0)
    out.append((float(np.median(times)), first))
  return out


def _batch(shape, batch):
  rng = np.random.default_rng(0)  # the batch train_step.py draws
  x = rng.integers(0, 256, (int(batch),) + tuple(int(v) for v in shape.split(",")), dtype=np.uint8)
  return x, (np.arange(int(batch)) % 10).astype(np.int32)


def serve(name, options, shape, batch):
  """Times one step per request, for train_step.py's paired timing.

  Prints `{"first": [train s, eval s], "version": ...}` (or `null` without a twin) once both
  steps have run once, then answers each stdin line "train" or "eval" with the seconds of one
  call; "quit" or end of input stops.
  """
  x, y = _batch(shape, batch)
  fns = step_functions(name, options, x, y)
  if fns is None:
    print("null", flush=True)
    return
  steps = dict(zip(("train", "eval"), fns))
  first = []
  for fn in fns:
    t0 = time.perf_counter()
    fn()
    first.append(time.perf_counter() - t0)
  print(json.dumps({"first": first, "version": torch.__version__}), flush=True)
  for line in sys.stdin:
    if line.strip() not in steps:
      return
    t0 = time.perf_counter()
    steps[line.strip()]()
    print(time.perf_counter() - t0, flush=True)


def main():
  """`torch_models.py NAME OPTIONS_JSON H,W,C BATCH REPEATS`: prints the timings as JSON.
  `torch_models.py --serve NAME OPTIONS_JSON H,W,C BATCH`: see `serve`.

  Run as its own process: next to JAX's thread pool in one process, PyTorch's OpenMP
  threads ran up to 9x slower (A(1,1) train 99 against 888 img/s).
  """
  if sys.argv[1] == "--serve":
    serve(sys.argv[2], json.loads(sys.argv[3]), sys.argv[4], sys.argv[5])
    return
  name, options, shape, batch, repeats = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
  x, y = _batch(shape, batch)
  timed = bench(name, options, x, y, int(repeats))
  print(json.dumps(None if timed is None else timed + [torch.__version__]))


if __name__ == "__main__":
  main()
