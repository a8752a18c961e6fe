"""Incremental neural architecture search (iNAS, Geifman & El-Yaniv 2019, Algorithm 1).

The search space is the ResNet grid A(B, i, j) with `i <= max_blocks` blocks per stack and
`j <= max_stacks` stacks. From A(i, j) the candidates are:
1. stay: A(i, j);
2. deepen every stack: A(i + 1, j), if `i < max_blocks`;
3. add a stack: A(floor(i*j / (j+1)) + 1, j + 1), if `j < max_stacks` -- the smallest
   block count that makes the network strictly deeper. The paper's text has
   `floor(i*j/(i+1)) + 1`, a typo that can give an equal or shallower network;
   ALGORITHMS.md §7.2 resolves it in favour of the reference code, as done here.

Each round, starting from the previous round's choice (so capacity never shrinks), iNAS
splits the labeled set 80/20 with a fixed seed, trains every candidate for the
premature-evaluation budget (`search.epochs`, default `train.epochs // 4`, reusing the full
schedule's learning rates, as the reference code does), ranks them by their best
validation accuracy over those epochs, and moves to the winner; it repeats for up to
`search.steps` steps and stops when the current architecture wins (ties keep it). Results
are cached per architecture within one call. Each architecture compiles once per run: the
loop's trainers are cached by architecture and reused for search and final training.
"""

import numpy as np



def candidates(blocks: int, stacks: int, max_blocks: int = 12, max_stacks: int = 5) -> list[tuple[int, int]]:
  """`[(blocks, stacks), ...]`: the current architecture first, then each minimal expansion."""
  if not (1 <= blocks <= max_blocks and 1 <= stacks <= max_stacks):
    raise ValueError(f"A({blocks},{stacks}) is outside the grid i <= {max_blocks}, j <= {max_stacks}")
  out = [(blocks, stacks)]
  if blocks < max_blocks:
    out.append((blocks + 1, stacks))
  if stacks < max_stacks:
    out.append((blocks * stacks // (stacks + 1) + 1, stacks + 1))
  return out


def split_labeled(labeled: np.ndarray, train_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
  """Splits labeled indices into (S', V') at `train_fraction`, with a fixed seed."""
  perm = np.random.default_rng(seed).permutation(labeled)
  cut = int(round(train_fraction * labeled.size))
  cut = min(max(cut, 1), labeled.size - 1)
  return np.sort(perm[:cut]), np.sort(perm[cut:])


def _previous_choice(context) -> tuple[int, int]:
  for record in reversed(context.history):
    chosen = (record.get("search") or {}).get("chosen")
    if chosen:
      return tuple(chosen)
  s = context.config.search
  return int(s.initial_blocks), int(s.initial_stacks)


def search(context):
  """The iNAS search step of one active-learning round; see the module docstring."""
  config = context.config
  s = config.search
  base_options = dict(config.model.options)
  labeled = context.pool_state.labeled_indices
  if labeled.size < 2:
    raise ValueError("iNAS needs at least 2 labeled points to split into S' and V'")
  train_idx, val_idx = split_labeled(labeled, s.train_fraction, s.split_seed)
  val = (context.data.pool_inputs, context.pool_state.labels[val_idx], val_idx)
  epochs = int(s.epochs) or max(1, config.train.epochs // 4)
  scores: dict[tuple[int, int], float] = {}

  def evaluate(arch: tuple[int, int]) -> float:
    if arch not in scores:
      trainer = context.trainer_for("resnet_grid", {**base_options, "blocks": arch[0], "stacks": arch[1]})
      fit = trainer.fit(context.key, context.data.pool_inputs, context.pool_state.labels, train_idx,
                        validation=val, epochs=epochs, track_best=True)
      scores[arch] = float(fit.val_accuracy)
    return scores[arch]

  current = _previous_choice(context)
  steps = []
  for _ in range(int(s.steps)):
    options = candidates(*current, max_blocks=s.max_blocks, max_stacks=s.max_stacks)
    accs = [evaluate(a) for a in options]
    best = options[int(np.argmax(accs))]  # argmax keeps the first (current) on ties
    steps.append([{"blocks": a[0], "stacks": a[1], "val_accuracy": acc} for a, acc in zip(options, accs)])
    if best == current:
      break
    current = best
  info = {"chosen": list(current), "start": list(_previous_choice(context)), "steps": steps,
          "search_epochs": epochs, "split": [int(train_idx.size), int(val_idx.size)]}
  return "resnet_grid", {**base_options, "blocks": current[0], "stacks": current[1]}, info

