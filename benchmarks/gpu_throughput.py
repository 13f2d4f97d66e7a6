"""Training throughput of the GPU path (issue 14): model ceilings, the loader, the bundle end to end, and the
bundle's own trainer step against a plain PyTorch loop, all measured side by side in one run.

Rows:
  ceiling    plain loop on random plain tensors already on the device: forward, loss, backward, AdamW step;
             per backbone x precision x memory format (fp16/bf16 on CUDA only: MONAI autocasts on 'cuda').
  proxy      the chest bundle's SupervisedTrainer (built from train.json, prepare_batch=PlainTensorBatch) fed
             the same collated MetaTensor batch over and over, against a plain loop on plain tensors with an
             identical network; also the trainer with MONAI's default prepare_batch (MetaTensors into the network).
             Median step time, blocks alternating. Target: bundle / plain <= 1.10.
  memory     (--memory-archs) activation bytes per image counted on the CPU -> the largest batch per GPU size.
  compile    (--compile) the plain loop with torch.compile: first-step (compile) time and step time.
  loader     the chest bundle's train#dataloader alone over generated images (img/s).
  end-to-end the bundle's trainer over its own loader, one epoch (img/s), with and without the prepared-image
             cache when common.data.cache exists; then the b_models study estimate
             (3 models x 5 runs x epochs x 86,524 training images at the measured end-to-end rate).

    python benchmarks/gpu_throughput.py --image-size 32 --steps 3          # CPU, seconds to minutes
    python benchmarks/gpu_throughput.py --image-size 224 --batch-size 64   # CUDA
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from ignite.engine import Events
from monai.bundle import ConfigParser
from monai.data import MetaTensor, list_data_collate
from monai.engines.utils import default_prepare_batch

from common.engines.precision import resolve_precision
from common.losses import MaskedBCEWithLogitsLoss
from common.networks import build_classifier
from common.synthetic import make_embedded_dataset

CHEST = Path(__file__).resolve().parents[1] / "bundles" / "chest_xray_classification"
STUDY_IMAGES, STUDY_MODELS, STUDY_RUNS = 86_524, 3, 5


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _plain_step(network: torch.nn.Module, optimizer: torch.optim.Optimizer, images: torch.Tensor,
                labels: torch.Tensor, dtype: torch.dtype | None, scaler: torch.amp.GradScaler | None) -> None:
    optimizer.zero_grad(set_to_none=True)
    with torch.autocast(images.device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
        loss = MaskedBCEWithLogitsLoss()(network(images), labels)
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    else:
        loss.backward()
        optimizer.step()


def _timed(step: Callable[[], None], steps: int, device: torch.device) -> list[float]:
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        _sync(device)
        times.append(time.perf_counter() - start)
    return times


def ceiling(arch: str, precision: str, channels_last: bool, args: argparse.Namespace, device: torch.device) -> float:
    """Images/s of a plain training loop on plain device tensors."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    network = build_classifier(arch, 14).to(device, memory_format=fmt).train()
    optimizer = torch.optim.AdamW(network.parameters(), lr=1e-4)
    images = torch.randn(args.batch_size, 3, args.image_size, args.image_size, device=device).to(memory_format=fmt)
    labels = torch.randint(0, 2, (args.batch_size, 14), device=device).float()
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    scaler = torch.amp.GradScaler("cuda") if precision == "fp16" else None
    _timed(lambda: _plain_step(network, optimizer, images, labels, dtype, scaler), 2, device)  # warm-up
    times = _timed(lambda: _plain_step(network, optimizer, images, labels, dtype, scaler), args.steps, device)
    return args.batch_size / statistics.median(times)


def _parser(data: Path, out: Path, args: argparse.Namespace, **override: object) -> ConfigParser:
    parser = ConfigParser()
    parser.read_config(str(CHEST / "configs" / "train.json"))
    parser.update({"bundle_root": str(out), "dataset_dir": str(data), "pretrained": "none", "epochs": 1,
                   "image_size": args.image_size, "batch_size": args.batch_size, "val_interval": 10**6,
                   "check_images": False, **override})
    return parser


def _collated_batch(args: argparse.Namespace) -> dict:
    """A batch as the bundle's DataLoader gives it: MetaTensor images with per-image meta, plain labels."""
    items = [{"image": MetaTensor(torch.randn(3, args.image_size, args.image_size),
                                  meta={"filename_or_obj": f"/data/img_{i}.png"}),
              "label": torch.randint(0, 2, (14,)).float(), "patient_id": str(i)} for i in range(args.batch_size)]
    return list_data_collate(items)


def _one_step_trainer(parser: ConfigParser, batch: dict, default_prepare: bool = False) -> Callable[[], float]:
    """The bundle's trainer on a one-batch epoch; each call runs it once and returns the iteration's time
    (ITERATION_STARTED to the last ITERATION_COMPLETED handler: prepare_batch, forward, backward, step, handlers)."""
    trainer = parser.get_parsed_content("train#trainer", instantiate=True)
    if default_prepare:
        trainer.prepare_batch = default_prepare_batch
    trainer.data_loader, trainer.state.epoch_length = [batch], 1
    device = parser.get_parsed_content("device")
    mark: dict[str, float] = {}
    trainer.add_event_handler(Events.ITERATION_STARTED, lambda _: mark.update(start=time.perf_counter()))
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda _: (_sync(device), mark.update(
        took=time.perf_counter() - mark["start"])))

    def run() -> float:
        trainer.run()  # a finished engine restarts at epoch 0; epoch-end handlers (checkpoint) are not timed
        return mark["took"]

    return run


def proxy(data: Path, out: Path, args: argparse.Namespace, device: torch.device) -> str:
    """Bundle trainer step vs plain loop on the same network definition, optimizer, loss and batch, interleaved
    step by step (the order rotating) so machine load falls on all three alike."""
    batch = _collated_batch(args)
    plain_net = build_classifier("densenet121", 14).to(device).train()
    optimizer = torch.optim.AdamW(plain_net.parameters(), lr=1e-4, weight_decay=1e-4)
    images, labels = batch["image"].as_tensor().to(device), batch["label"].to(device)
    fixed = {"precision": "fp32", "channels_last": False, "resume": "never"}
    runs = {"plain": lambda: _timed(lambda: _plain_step(plain_net, optimizer, images, labels, None, None), 1,
                                    device)[0],
            "bundle": _one_step_trainer(_parser(data, out / "proxy", args, **fixed), batch),
            "meta": _one_step_trainer(_parser(data, out / "meta", args, **fixed), batch, default_prepare=True)}
    times: dict[str, list[float]] = {name: [] for name in runs}
    names = list(runs)
    for step in range(args.steps * args.repeats + 2):
        for name in names[step % 3:] + names[:step % 3]:
            took = runs[name]()
            if step >= 2:  # two warm-up rounds: allocator, oneDNN kernels, handlers
                times[name].append(took)
    p, b, m = (statistics.median(times[k]) for k in names)
    lo = {k: min(v) for k, v in times.items()}
    return (f"proxy densenet121 {args.image_size}px batch {args.batch_size} fp32 on {device} "
            f"({len(times['plain'])} interleaved steps each; median, and min: the least disturbed by other load):\n"
            f"  plain loop, plain tensors         : {p * 1e3:7.1f} ms  min {lo['plain'] * 1e3:7.1f} ms\n"
            f"  bundle trainer, PlainTensorBatch  : {b * 1e3:7.1f} ms  min {lo['bundle'] * 1e3:7.1f} ms  "
            f"ratio {b / p:.3f}, of mins {lo['bundle'] / lo['plain']:.3f} (target <= 1.10)\n"
            f"  bundle trainer, MONAI default     : {m * 1e3:7.1f} ms  min {lo['meta'] * 1e3:7.1f} ms  "
            f"ratio {m / p:.3f}, of mins {lo['meta'] / lo['plain']:.3f} (MetaTensor into the network)\n")


def compiled(args: argparse.Namespace, device: torch.device) -> str:
    """Eager vs torch.compile plain loop: first step (includes compilation) and median later step."""
    rows = []
    images = torch.randn(args.batch_size, 3, args.image_size, args.image_size, device=device)
    labels = torch.randint(0, 2, (args.batch_size, 14), device=device).float()
    for use_compile in (False, True):
        network = build_classifier("densenet121", 14).to(device).train()
        model = torch.compile(network) if use_compile else network
        optimizer = torch.optim.AdamW(network.parameters(), lr=1e-4)

        def step(m: torch.nn.Module = model, o: torch.optim.Optimizer = optimizer) -> None:
            _plain_step(m, o, images, labels, None, None)

        first = _timed(step, 1, device)[0]
        later = statistics.median(_timed(step, max(args.steps, 3), device))
        name = "compiled" if use_compile else "eager   "
        rows.append(f"  {name}: first step {first:6.1f} s, step {later * 1e3:7.1f} ms")
    return f"compile densenet121 {args.image_size}px batch {args.batch_size} on {device}:\n" + "\n".join(rows) + "\n"


def loader_and_end_to_end(data: Path, out: Path, args: argparse.Namespace) -> tuple[str, float]:
    """Loader alone and the bundle's trainer over its own loader (one epoch), with/without the cache."""
    variants: list[tuple[str, dict]] = [("no cache", {})]
    lines = []
    if importlib.util.find_spec("common.data.cache_build") is None:
        lines.append("  with cache: skipped (common.data.cache_build does not exist yet)")
    else:
        from common.data.cache_build import build_cache

        overrides = {"image_size": args.image_size, "check_images": False}
        build_cache(CHEST, data / "datalist.json", out / "cache", overrides=overrides, dataset_dir=data,
                    progress=False)
        variants.append(("cache", {"cache_dir": str(out / "cache")}))
    best = 0.0
    for name, override in variants:
        parser = _parser(data, out / f"e2e_{name.replace(' ', '_')}", args, num_workers=args.num_workers, **override)
        if "cache_dir" in override and "cache_dir" not in parser.config:
            lines.append("  with cache: skipped (train.json has no cache_dir key)")
            continue
        loader = parser.get_parsed_content("train#dataloader")
        n = len(loader.dataset)
        for _ in loader:  # first pass: file cache (and the prepared-image cache, when on)
            pass
        start = time.perf_counter()
        for _ in loader:
            pass
        rate_loader = n / (time.perf_counter() - start)
        trainer = parser.get_parsed_content("train#trainer")
        start = time.perf_counter()
        trainer.run()
        rate = n / (time.perf_counter() - start)
        best = max(best, rate)
        lines.append(f"  {name:8s}: loader alone {rate_loader:8.1f} img/s ({loader.num_workers} workers); "
                     f"bundle end to end {rate:8.1f} img/s ({n} images, 1 epoch incl. start-up)")
    return f"loader / end to end, chest bundle {args.image_size}px batch {args.batch_size}:\n" + "\n".join(lines) + \
        "\n", best


def activation_bytes_per_image(arch: str, image_size: int, bf16: bool) -> tuple[float, float]:
    """(bytes saved for backward per image, parameter bytes) of a training forward pass, counted on the CPU with
    saved-tensor hooks (the difference between batch 2 and batch 1, so weights saved once do not count); bf16 runs
    under CPU autocast so the saved tensors have the dtypes a bf16 GPU run saves. Device-independent, so it sizes
    GPU batches without a GPU (the allocator's fragmentation and cuDNN workspaces come on top)."""
    network = build_classifier(arch, 14).train()
    totals = []
    for batch in (1, 2):
        seen: dict[int, int] = {}

        def pack(tensor: torch.Tensor, seen: dict[int, int] = seen) -> torch.Tensor:
            seen[tensor.untyped_storage().data_ptr()] = tensor.untyped_storage().nbytes()
            return tensor

        x = torch.randn(batch, 3, image_size, image_size)
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), \
                torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            network(x).float().sum()
        totals.append(sum(seen.values()))
    params = sum(p.numel() * p.element_size() for p in network.parameters())
    return float(totals[1] - totals[0]), float(params)


def memory_rows(args: argparse.Namespace) -> str:
    """Per-image activation memory and the largest batch that fits 80% of an 80 GB and a 141 GB (H200) GPU."""
    lines = [f"memory (saved activations per image, training, {args.image_size}px; batch that fits 80% of GPU "
             f"memory after weights + AdamW state = 4 x parameters):"]
    for arch in args.memory_archs:
        for bf16 in (False, True):
            per_image, params = activation_bytes_per_image(arch, args.image_size, bf16)
            fits = [int((0.8 * gb * 2**30 - 4 * params) // per_image) for gb in (80, 141)]
            lines.append(f"  {arch:12s} {'bf16' if bf16 else 'fp32'}: {per_image / 2**20:8.1f} MiB/image, "
                         f"parameters {params / 2**20:6.1f} MiB -> batch <= {fits[0]} (80 GB), {fits[1]} (141 GB)")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    cli = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    cli.add_argument("--image-size", type=int, default=224)
    cli.add_argument("--batch-size", type=int, default=32)
    cli.add_argument("--steps", type=int, default=10, help="timed steps per measurement")
    cli.add_argument("--repeats", type=int, default=3, help="alternating blocks of the proxy")
    cli.add_argument("--archs", nargs="+", default=["densenet121", "resnet50", "resnet18"])
    cli.add_argument("--images", type=int, default=64, help="generated training images for loader/end to end")
    cli.add_argument("--num-workers", default="auto", help="'auto' or an integer")
    cli.add_argument("--epochs", type=int, default=10, help="epochs per run in the study estimate")
    cli.add_argument("--compile", action="store_true", help="also measure torch.compile (slow on a CPU)")
    cli.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    cli.add_argument("--memory-archs", nargs="*", default=[], help="archs for the activation-memory rows, e.g. "
                     "densenet121 resnet50 resnet18 swin_t (CPU forward passes at --image-size)")
    cli.add_argument("--skip", nargs="*", default=[], choices=["ceiling", "proxy", "e2e"])
    args = cli.parse_args(argv)
    args.num_workers = args.num_workers if args.num_workers == "auto" else int(args.num_workers)
    logging.basicConfig(level=logging.WARNING)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    print(f"device {device}, torch {torch.__version__}, threads {torch.get_num_threads()}", flush=True)
    if args.memory_archs:
        print(memory_rows(args), end="", flush=True)
    if "ceiling" not in args.skip:
        print(f"ceiling (plain loop on device tensors) {args.image_size}px batch {args.batch_size}:", flush=True)
        for arch in args.archs:
            for precision in ("fp32", "fp16", "bf16"):
                if device.type != "cuda" and precision != "fp32":
                    print(f"  {arch:12s} {precision}: skipped (needs CUDA)")
                    continue
                for channels_last in (False, True):
                    rate = ceiling(arch, precision, channels_last, args, device)
                    layout = "channels_last" if channels_last else "contiguous"
                    print(f"  {arch:12s} {precision} {layout:13s}: {rate:9.1f} img/s", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        data, out = Path(tmp) / "data", Path(tmp) / "out"
        make_embedded_dataset("chestxray14", data, {"n_patients": max(4, args.images * 10 // 16),
                                                    "image_size": max(args.image_size, 32), "seed": 0},
                              {"val_fraction": 0.1})  # fmt: skip
        if "proxy" not in args.skip:
            print(proxy(data, out, args, device), end="", flush=True)
        if args.compile:
            print(compiled(args, device), end="", flush=True)
        if "e2e" not in args.skip:
            report, rate = loader_and_end_to_end(data, out, args)
            print(report, end="")
            if rate > 0:
                hours = STUDY_MODELS * STUDY_RUNS * args.epochs * STUDY_IMAGES / rate / 3600
                print(f"b_models study estimate: {STUDY_MODELS} models x {STUDY_RUNS} runs x {args.epochs} epochs x "
                      f"{STUDY_IMAGES:,} images at {rate:.1f} img/s = {hours:,.1f} h on one {device.type} device "
                      f"(precision auto -> {resolve_precision('auto', device)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
