"""`arvid train layers`: the layer splitter (`LayerNet`) of a layered tokenizer, and the tokenizer folder around it.

A layered tokenizer (`arvid.tokenizer.layered`) cuts its reference picture into K layers, one per object; where
the objects touch, its LayerNet says which object owns each ink pixel. This task trains that net and nothing else:
the reference coder comes whole from --reference (a conv tokenizer folder, or a layered one whose reference coder
and encoder settings are reused) and stays frozen, so the run folder is a complete layered tokenizer folder at
every checkpoint (`load_tokenizer(OUT)`).

Data: composites made the way Moving MNIST frames are (`composites`): K train digits (canonical 0-3999, never the
held-out 4000-4999) at random places, combined by max, so each ink pixel's owner is known (the digit brightest
there; pixels at or below `InkRule.low` are background). One frame in ten holds fewer digits. Jitter (a blur and
noise of random strength) makes the input look like a picture the reference coder decoded. Batch (step, rank) is
drawn from a generator seeded by (seed, step, rank): a pure function of its arguments, so --resume is exact.

Loss (`best_order_loss`): the slots have no natural order, so each frame's pixel cross-entropy (ink pixels weigh
`INK_WEIGHT`) is taken under the best of the K! slot orders.

Evaluation: a fixed set of held-out composites (digits 4000-4999, K per frame), coded and decoded by the reference
coder once, so the net is judged on pictures as the tokenizer shows it. eval_ink_accuracy is the share of their
ink pixels given to the right layer under each frame's best slot order (the layer is the most likely slot, as
`split_layers` reads it); eval_touching_accuracy the same over the frames whose decoded ink is one piece, the
frames where the tokenizer asks the net at all.
"""

from __future__ import annotations

import argparse
import itertools
import shlex

import numpy as np
import torch
import torch.nn.functional as F

from arvid.data.moving_mnist import DIGIT, mnist_digits
from arvid.errors import ArvidError
from arvid.tokenizer import LayeredConfig, LayeredTokenizer, Tokenizer, load_tokenizer
from arvid.tokenizer.layers import InkRule, count_pieces
from arvid.tokenizer.model import KIND
from arvid.train.distributed import unwrap
from arvid.train.options import layers_arguments as add_arguments

DATASETS = ("moving-mnist",)  # datasets whose frames are composites of objects this task can make
INK_WEIGHT = 4.0  # an ink pixel's weight in the loss, a background pixel's is 1
MAX_LAYERS = 4  # the loss tries K! slot orders
EVAL_SEED = 12345
LOOKAHEAD = 16  # a new layered tokenizer's lookahead, or τ where that is less


# ---------------------------------------------------------------- data


def composites(rng: np.random.Generator, digits: np.ndarray, n: int, layers: int, size: tuple[int, int],
               jitter: bool = True, fewer: float = 0.1, low: int = InkRule.low) -> tuple[torch.Tensor, torch.Tensor]:
    """n frames of `layers` digits (fewer, 1 .. layers, with probability `fewer`) at random places, combined by
    max: float (n, 1, H, W) in [0, 1] and their owners int64 (n, H, W): 0 background, 1..layers the digit."""
    H, W = size
    x = np.zeros((n, H, W), np.uint8)
    owner = np.zeros((n, H, W), np.int64)
    for i in range(n):
        k = layers if rng.random() >= fewer else int(rng.integers(1, layers + 1))
        stack = np.zeros((k, H, W), np.uint8)  # each digit on its own layer
        for j in range(k):
            y, xx = rng.integers(0, H - DIGIT + 1), rng.integers(0, W - DIGIT + 1)
            stack[j, y:y + DIGIT, xx:xx + DIGIT] = digits[rng.integers(0, len(digits))]
        x[i] = stack.max(0)
        owner[i] = np.where(x[i] > low, stack.argmax(0) + 1, 0)
    frames = torch.from_numpy(x).float()[:, None] / 255  # (n, 1, H, W)
    return (soften(frames, rng) if jitter else frames), torch.from_numpy(owner)


def soften(frames: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """A batch (n, 1, H, W) in [0, 1] as a decoded picture looks: blurred (σ in [0, 1], none below 0.3) and noisy
    (σ in [0, 0.04]), one strength for the batch."""
    sigma = float(rng.uniform(0, 1.0))
    if sigma > 0.3:
        frames = gaussian_blur(frames, sigma)
    noise = rng.normal(0, rng.uniform(0, 0.04), frames.shape).astype(np.float32)
    return (frames + torch.from_numpy(noise)).clamp(0, 1)


def gaussian_blur(frames: torch.Tensor, sigma: float, radius: int = 2) -> torch.Tensor:
    """A separable Gaussian blur of (n, 1, H, W), edges replicated."""
    g = torch.exp(-torch.arange(-radius, radius + 1).float() ** 2 / (2 * sigma ** 2))
    g = g / g.sum()
    frames = F.conv2d(F.pad(frames, (radius, radius, 0, 0), mode="replicate"), g.view(1, 1, 1, -1))
    return F.conv2d(F.pad(frames, (0, 0, radius, radius), mode="replicate"), g.view(1, 1, -1, 1))


# ---------------------------------------------------------------- loss and figures


def slot_orders(k: int) -> torch.Tensor:
    """The k! orders of the slots as class maps (k!, k + 1): owner j -> class order[j] (background stays 0)."""
    return torch.tensor([[0, *p] for p in itertools.permutations(range(1, k + 1))])


def best_order_loss(logits: torch.Tensor, owner: torch.Tensor, ink_weight: float = INK_WEIGHT) -> torch.Tensor:
    """Pixel cross-entropy (ink pixels weigh `ink_weight`) under each frame's best slot order, averaged.

    logits (B, k + 1, H, W), owner int64 (B, H, W) in 0..k. cost[b, j, c] sums -log p(c) over the pixels owned by
    j, so an order's loss is a sum of k + 1 entries of it: every order at the price of one."""
    B, c, H, W = logits.shape
    logp = F.log_softmax(logits.float(), dim=1).flatten(2)  # (B, k + 1, HW)
    owned = F.one_hot(owner.flatten(1), c).float()  # (B, HW, k + 1)
    owned[..., 1:] *= ink_weight
    cost = -torch.bmm(logp, owned).transpose(1, 2)  # (B, j owner, class c)
    orders = slot_orders(c - 1).to(logits.device)  # (P, k + 1)
    per_order = cost[:, torch.arange(c, device=logits.device), orders].sum(-1)  # (B, P)
    return per_order.min(1).values.mean() / (H * W)


def right_ink(logits: torch.Tensor, owner: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per frame: ink pixels given to their owner's layer under the frame's best slot order, and ink pixels (both
    (B,)). A pixel's layer is its most likely slot, the background left out, as `split_layers` reads it."""
    k = logits.shape[1] - 1
    layer = logits[:, 1:].argmax(1) + 1  # (B, H, W) in 1..k
    orders = slot_orders(k).to(owner.device)  # (P, k + 1)
    ink = owner > 0
    hits = torch.stack([((order[owner] == layer) & ink).flatten(1).sum(1) for order in orders], 1)  # (B, P)
    return hits.max(1).values, ink.flatten(1).sum(1)


# ---------------------------------------------------------------- the model and the task


class LayerTraining(LayeredTokenizer):
    """A layered tokenizer whose forward is its LayerNet's, (B, 1, H, W) -> (B, k + 1, H, W): what the engine calls
    and trains. Its state dict is the layered tokenizer's, so every checkpoint is a layered tokenizer folder."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer_net(x)


class LayersTask:
    """A TrainTask for the LayerNet of a layered tokenizer (its reference coder frozen)."""

    kind = KIND  # the folder is a tokenizer folder
    command = "layers"  # `arvid train layers`

    def __init__(self, config: LayeredConfig, reference_state: dict[str, torch.Tensor], eval_every: int = 500,
                 eval_frames: int = 512, steps: int = 0, seed: int = 0):
        if eval_frames < 1 or eval_every < 0:
            raise ArvidError(f"--eval-frames {eval_frames} must be at least 1, --eval-every {eval_every} at least 0")
        self.config, self.reference_state, self.seed = config, reference_state, seed
        self.eval_every, self.eval_frames = eval_every or steps, eval_frames  # 0: evaluate at the last step only
        self.train_digits = mnist_digits("train")[0]  # canonical digits 0-3999
        self._eval_set: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None

    def build_model(self) -> LayerTraining:
        model = LayerTraining(self.config)
        model.reference.load_state_dict(self.reference_state)
        model.reference.requires_grad_(False)
        return model

    def model_config(self) -> dict:
        return self.config.to_dict()

    def normalize_config(self, saved: dict) -> dict:
        """The notes (the command) may differ on --resume: a run is the same run whatever they say."""
        return {**saved, "notes": self.config.notes} if isinstance(saved, dict) else saved

    def batch(self, step: int, rank: int, world_size: int, batch_size: int, device) -> tuple[torch.Tensor, torch.Tensor]:
        """B softened composites (B, 1, H, W) in [0, 1] and their owners (B, H, W)."""
        rng = np.random.default_rng([self.seed, step, rank])
        x, owner = composites(rng, self.train_digits, batch_size, self.config.layers, self.config.size)
        return x.to(device), owner.to(device)

    def loss(self, model, batch) -> tuple[torch.Tensor, dict[str, float]]:
        x, owner = batch
        logits = model(x)  # (B, k + 1, H, W)
        right, ink = right_ink(logits.detach(), owner)
        return best_order_loss(logits, owner), {"ink_accuracy": (right.sum() / ink.sum().clamp(min=1)).item()}

    def throughput(self, batch) -> dict[str, float]:
        return {"frames": float(batch[0].shape[0])}

    def eval_set(self, model: LayeredTokenizer) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The held-out composites as the reference coder draws them (N, 1, H, W) in [0, 1], their owners (N, H, W),
        and which of them have their ink in one piece (N,) bool. Made once."""
        if self._eval_set is None:
            self._eval_set = held_out(model, self.eval_frames)
        return self._eval_set

    def eval_figures(self, model) -> dict[str, float]:
        """eval_ink_accuracy and eval_touching_accuracy on the fixed held-out composites."""
        bare = unwrap(model)
        x, owner, touching = self.eval_set(bare)
        right, ink = ink_figures(bare.layer_net, x, owner)
        figures = {"eval_ink_accuracy": (right.sum() / ink.sum().clamp(min=1)).item()}
        if touching.any():
            figures["eval_touching_accuracy"] = (right[touching].sum() / ink[touching].sum().clamp(min=1)).item()
        return figures

    def preview_clips(self, model) -> list[tuple[str, np.ndarray]]:
        """Eight held-out composites as the reference coder draws them, above the layers the net gives their ink."""
        bare = unwrap(model)
        x, owner, _ = self.eval_set(bare)
        x, owner = x[:8], owner[:8]
        with torch.no_grad():
            layer = bare.layer_net(x.to(bare.device)).float()[:, 1:].argmax(1).cpu() + 1  # (n, H, W)
        gray = (x[:, 0] * 255).round().to(torch.uint8)[..., None].expand(-1, -1, -1, 3)  # (n, H, W, 3)
        colors = torch.tensor(LAYER_COLORS, dtype=torch.uint8)[(layer - 1) % len(LAYER_COLORS)]  # (n, H, W, 3)
        shown = torch.where((owner > 0)[..., None], colors, torch.zeros_like(colors))
        return [("held-out composites, decoded", gray.numpy()), ("their ink's layers", shown.numpy())]


LAYER_COLORS = ((230, 60, 60), (60, 200, 60), (70, 110, 240), (230, 200, 40))


@torch.no_grad()
def held_out(tok: LayeredTokenizer, n: int, seed: int = EVAL_SEED) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """n composites of held-out digits (4000-4999), `layers` each, coded and decoded by `tok`'s reference coder:
    (n, 1, H, W) in [0, 1], owners (n, H, W) and whether each one's decoded ink is one piece (n,)."""
    digits = mnist_digits("eval")[0]
    x, owner = composites(np.random.default_rng(seed), digits, n, tok.config.layers, tok.config.size, jitter=False,
                          fewer=0.0)
    pictures = torch.cat([tok.reference_pixels(tok.reference_codes(x[i:i + 64, 0] * 255)) for i in range(0, n, 64)])
    rule = InkRule(**tok.config.ink)
    touching = torch.tensor([count_pieces(p, rule) < 2 for p in pictures.numpy()])
    return pictures[:, None] / 255, owner, touching


@torch.no_grad()
def ink_figures(net: torch.nn.Module, x: torch.Tensor, owner: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """`right_ink` of `net` over frames (N, 1, H, W), 64 at a time: right and ink pixels per frame (N,), on the CPU."""
    device = next(net.parameters()).device
    out = [right_ink(net(x[i:i + 64].to(device)).float(), owner[i:i + 64].to(device)) for i in range(0, len(x), 64)]
    return torch.cat([r for r, _ in out]).cpu(), torch.cat([i for _, i in out]).cpu()


# ---------------------------------------------------------------- command line


def reference_coder(path: str) -> tuple[Tokenizer, dict]:
    """The conv tokenizer at `path` (or a layered tokenizer's reference coder) and the layered settings to keep
    (those of a layered tokenizer's encoder; none for a conv one)."""
    try:
        tok = load_tokenizer(path)
    except ArvidError as e:
        raise ArvidError(f"--reference {path}: {e}") from None
    if isinstance(tok, LayeredTokenizer):
        c = tok.config
        return tok.reference, {"lookahead": c.lookahead, "search_radius": c.search_radius,
                               "search_passes": c.search_passes, "ink": dict(c.ink)}
    return tok, {}


def layered_config(reference: Tokenizer, keep: dict, layers: int, size: int, notes: dict, source: str) -> LayeredConfig:
    """The layered tokenizer's config around `reference`, or an ArvidError saying why these frames do not fit it."""
    ref = reference.config
    if ref.channels != 1:
        raise ArvidError(f"--reference {source} codes {ref.channels}-channel frames: a layered tokenizer's reference "
                         "coder must code one channel (grayscale), as Moving MNIST's frames are")
    if not 2 <= layers <= MAX_LAYERS:
        raise ArvidError(f"--layers must be between 2 and {MAX_LAYERS} (one layer needs no splitter), got {layers}")
    if size < DIGIT or size % 8 or size % ref.spatial_factor:
        step = max(8, ref.spatial_factor)
        raise ArvidError(f"--size {size} does not fit: frames hold {DIGIT}-pixel digits and the layer splitter and "
                         f"--reference {source} (spatial factor {ref.spatial_factor}) need a multiple of {step}: "
                         f"try {max(step, -(-max(size, DIGIT) // step) * step)}")
    h = size // ref.spatial_factor
    tau = h * h // (2 * layers)
    if tau < 1 or h * h % (2 * layers):
        raise ArvidError(f"--size {size} with --reference {source} gives {h}x{h} tokens per latent frame, which do not "
                         f"hold whole frames of {layers} layers x (y, x): choose --layers dividing {h * h // 2} or "
                         "a larger --size")
    keep = {**keep, "lookahead": min(keep.get("lookahead", LOOKAHEAD), tau)}
    return LayeredConfig(reference=ref.to_dict(), size=(size, size), layers=layers, notes=notes, **keep)


def command_line(args: argparse.Namespace) -> str:
    """The command that makes this folder, from the run's options (the same on --resume)."""
    flags = [("--reference", args.reference), ("--dataset", args.dataset), ("--layers", args.layers),
             ("--size", args.size), ("--steps", args.steps), ("--batch-size", args.batch_size), ("--lr", args.lr),
             ("--seed", args.seed)]
    return "arvid train layers " + " ".join(f"{flag} {shlex.quote(str(v))}" for flag, v in flags)


def task_from_args(args: argparse.Namespace) -> LayersTask:
    if args.dataset not in DATASETS:
        raise ArvidError(f"--dataset {args.dataset} cannot train the layer splitter: it learns from composites of "
                         f"objects whose owners are known, and only {', '.join(DATASETS)} frames are made that way")
    if not args.reference:
        raise ArvidError("--reference is required: the tokenizer folder whose coder codes the reference picture")
    reference, keep = reference_coder(args.reference)
    notes = {"dataset": args.dataset, "size": args.size, "reference": str(args.reference),
             "layer_net": f"trained on composites of {args.layers} train digits whose owners are known: "
                          f"{command_line(args)}"}
    config = layered_config(reference, keep, args.layers, args.size, notes, args.reference)
    return LayersTask(config, reference.state_dict(), args.eval_every, args.eval_frames, steps=args.steps,
                      seed=args.seed)


__all__ = ["LayerTraining", "LayersTask", "add_arguments", "best_order_loss", "composites", "held_out",
           "ink_figures", "layered_config", "right_ink", "task_from_args"]
