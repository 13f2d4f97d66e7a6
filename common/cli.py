"""``python -m common <command>``: prepare datasets and image caches, generate embedded data, run the demo.

Every command has ``--help``. A user error (bad data, bad config, missing weights, an output that cannot be
written) prints one readable line to stderr, ``error: <message>``, and exits with status 2; its traceback is
shown only with ``--debug`` (before the command) or ``MEDXFER_DEBUG=1``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from common.errors import DEBUG_ENV, run_command

__all__ = ["build_parser", "main"]

logger = logging.getLogger("common.cli")


def _prepare_chestxray14(args: argparse.Namespace) -> None:
    from common.data import CHESTXRAY14_FINDINGS, load_chestxray14_datalist, summarise_datalist
    from common.data.chestxray14_boxes import BBOX_CSV_NAME, count_boxes
    from common.data.single_label import summarise_single_label
    from common.io import atomic_write_json

    datalist = load_chestxray14_datalist(
        args.dataset_dir, val_fraction=args.val_fraction, seed=args.seed, check_images=not args.no_check_images,
        task=args.task, task_alone=args.task_alone,
    )  # fmt: skip
    atomic_write_json(args.output, datalist)
    if args.task is not None:
        sys.stdout.write(f"wrote {args.output} (binary task {datalist['classes'][1]!r} vs 'No Finding')\n"
                         f"{summarise_single_label(datalist)}\n")  # fmt: skip
        return
    boxes = count_boxes(datalist)
    box_line = (f"attached {sum(boxes.values())} box(es) of {BBOX_CSV_NAME} per split: {boxes}\n"
                if (Path(args.dataset_dir) / BBOX_CSV_NAME).is_file() else "")
    sys.stdout.write(f"wrote {args.output}\n{box_line}{summarise_datalist(datalist, CHESTXRAY14_FINDINGS)}\n")


def _prepare_single_label(args: argparse.Namespace) -> None:
    """class-folders, label-csv and medmnist: single-label datalists with class names."""
    from common.data import load_class_folders_datalist, load_label_csv_datalist, load_medmnist_datalist
    from common.data.single_label import summarise_single_label
    from common.io import atomic_write_json

    output = Path(args.output)
    if args.dataset == "medmnist":
        names = list(dict.fromkeys(["datalist.json", output.name]))  # PNGs and datalists change together
        datalist = load_medmnist_datalist(args.npz, output.parent, flag=args.flag, datalist_names=names)
        if "classes" not in datalist:  # chestmnist: the multi-label path
            from common.data import CHESTXRAY14_FINDINGS, summarise_datalist

            sys.stdout.write(f"wrote {output}\n{summarise_datalist(datalist, CHESTXRAY14_FINDINGS)}\n")
            return
    else:
        shared = {"val_fraction": args.val_fraction, "test_fraction": args.test_fraction, "seed": args.seed,
                  "check_images": not args.no_check_images, "classes": args.classes}  # fmt: skip
        if args.dataset == "class-folders":
            datalist = load_class_folders_datalist(args.dataset_dir, **shared)
        else:
            datalist = load_label_csv_datalist(
                args.dataset_dir, args.csv, **shared, image_column=args.image_column, label_column=args.label_column,
                patient_column=args.patient_column, split_column=args.split_column, image_dir=args.image_dir,
                image_suffix=args.image_suffix,
            )  # fmt: skip
        atomic_write_json(output, datalist)
    sys.stdout.write(f"wrote {output} ({len(datalist['classes'])} classes)\n{summarise_single_label(datalist)}\n")


def _prepare_chestmnist(args: argparse.Namespace) -> None:
    from common.data import CHESTXRAY14_FINDINGS, load_chestmnist_datalist, summarise_datalist

    output = Path(args.output)
    # datalist.json (what the bundles read) and --output, if named otherwise, change together with images/.
    names = list(dict.fromkeys(["datalist.json", output.name]))
    datalist = load_chestmnist_datalist(args.npz, output.parent, datalist_names=names)
    sys.stdout.write(f"wrote {output} (images under {output.parent / 'images'})\n"
                     f"{summarise_datalist(datalist, CHESTXRAY14_FINDINGS)}\n")


def _prepare_mammography(args: argparse.Namespace) -> None:
    from common.data import load_cbis_ddsm_datalist, load_inbreast_datalist, summarise_datalist
    from common.io import atomic_write_json

    if args.dataset == "cbis-ddsm":
        datalist = load_cbis_ddsm_datalist(args.dataset_dir, val_fraction=args.val_fraction, seed=args.seed,
                                           check_images=not args.no_check_images)
    else:
        datalist = load_inbreast_datalist(args.dataset_dir, val_fraction=args.val_fraction,
                                          test_fraction=args.test_fraction, seed=args.seed,
                                          malignant_from=args.malignant_from)
    atomic_write_json(args.output, datalist)
    sys.stdout.write(f"wrote {args.output}\n{summarise_datalist(datalist, ['malignant'])}\n")


def _prepare_bcss(args: argparse.Namespace) -> None:
    from common.data import load_bcss_datalist, summarise_bcss_datalist
    from common.io import atomic_write_json

    # Masks are read once, by the summary, which validates their codes like check_images=True would.
    datalist = load_bcss_datalist(args.dataset_dir, val_fraction=args.val_fraction, test_fraction=args.test_fraction,
                                  seed=args.seed, check_images=False)
    if args.no_check_images:
        sizes = {split: len(items) for split, items in datalist.items()}
        summary = f"ROIs per split: {sizes}"
    else:
        summary = summarise_bcss_datalist(datalist, args.dataset_dir)
    atomic_write_json(args.output, datalist)
    sys.stdout.write(f"wrote {args.output}\n{summary}\n")


def _prepare_general_medical(args: argparse.Namespace) -> None:
    from common.data import build_general_datalist
    from common.data.general_medical_sampling import format_sampling_table

    datalist = build_general_datalist(args.sources, args.output, val_fraction=args.val_fraction, seed=args.seed,
                                      target=args.target)
    counts = ", ".join(f"{s['name']} {s['training']}/{s['validation']} (test left out: {s['test_excluded']})"
                       for s in datalist["sources"])  # fmt: skip
    sys.stdout.write(f"wrote {Path(args.output) / 'datalist.json'}: {len(datalist['class_names'])} classes; "
                     f"training/validation per source: {counts}\n{format_sampling_table(datalist['sampling'])}\n")


def _parse_set(text: str) -> tuple[str, object]:
    """``KEY=VALUE`` of ``--set``: VALUE read as JSON (numbers, true, null, lists), else kept as a string."""
    import json

    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE (e.g. image_size=512), got {text!r}")
    try:
        return key.strip(), json.loads(value)
    except json.JSONDecodeError:
        return key.strip(), value


def _prepare_cache(args: argparse.Namespace) -> None:
    from common.data.cache_build import build_cache, default_workers

    workers = default_workers() if args.num_workers is None else args.num_workers
    index = build_cache(args.bundle, args.datalist, args.output, splits=args.splits, config=args.config,
                        overrides=dict(args.set or []), dataset_dir=args.dataset_dir, num_workers=workers,
                        shard_size=args.shard_size, dtype=args.dtype, progress=not args.no_progress)  # fmt: skip
    stored = ", ".join(f"{key}: {e['stored']} ({'lossy' if 'max_abs_error' in e else 'bit-exact'})"
                       for key, e in index["encodings"].items())  # fmt: skip
    sys.stdout.write(f"wrote {args.output}: {index['items']} item(s) {index['splits']} in {len(index['shards'])} "
                     f"shard(s); {stored}\n")  # fmt: skip


def _generate_bcss(args: argparse.Namespace) -> None:
    from common.synthetic import generate_bcss

    root = generate_bcss(args.output_dir, n_patients=args.patients, tiles_per_patient=args.tiles_per_patient,
                         tile_size=args.tile_size, seed=args.seed)
    sys.stdout.write(f"wrote a synthetic BCSS-layout dataset to {root}\n")


def _generate_mammography(args: argparse.Namespace) -> None:
    from common.synthetic import generate_cbis_ddsm, generate_inbreast

    make = generate_cbis_ddsm if args.dataset == "cbis-ddsm" else generate_inbreast
    root = make(args.output_dir, n_patients=args.patients, image_size=args.image_size, seed=args.seed)
    sys.stdout.write(f"wrote a synthetic {args.dataset}-layout dataset to {root}\n")


def _generate_single_label(args: argparse.Namespace) -> None:
    """dermoscopy, endoscopy, brain-mri and medmnist generators."""
    from common.synthetic import generate_brain_mri, generate_dermoscopy, generate_endoscopy, generate_medmnist

    if args.dataset == "medmnist":
        root = generate_medmnist(args.output_dir, args.flag, args.size, n_train=args.train, n_val=args.val,
                                 n_test=args.test, seed=args.seed)  # fmt: skip
    elif args.dataset == "brain-mri":
        root = generate_brain_mri(args.output_dir, n_patients=args.patients, image_size=args.image_size,
                                  test_fraction=args.test_fraction, seed=args.seed)  # fmt: skip
    else:
        make = generate_dermoscopy if args.dataset == "dermoscopy" else generate_endoscopy
        root = make(args.output_dir, n_patients=args.patients, max_images_per_patient=args.max_images_per_patient,
                    image_size=args.image_size, seed=args.seed)  # fmt: skip
    sys.stdout.write(f"wrote a synthetic {args.dataset} dataset to {root}\n")


def _add_single_label_parsers(datasets: Any, gen_sets: Any) -> None:
    """``prepare-data class-folders | label-csv | medmnist`` and ``generate-data dermoscopy | endoscopy | brain-mri |
    medmnist``."""
    folders = datasets.add_parser("class-folders", help="single-label images in root/<class>/ or "
                                  "root/Training|Testing/<class>/ (+ optional patients.csv: image,patient_id)")
    table = datasets.add_parser("label-csv", help="single-label images listed in a CSV: image,label[,patient_id]"
                                "[,split]; column names settable (HAM10000_metadata.csv: image_id, dx, lesion_id)")
    for sub in (folders, table):
        sub.add_argument("--dataset-dir", required=True, type=Path, help="the dataset's top folder")
        sub.add_argument("--output", required=True, type=Path, help="datalist JSON to write")
        sub.add_argument("--val-fraction", type=float, default=0.1, help="training patients used for validation")
        sub.add_argument("--test-fraction", type=float, default=0.2, help="patients used for test (no official split)")
        sub.add_argument("--seed", type=int, default=0, help="seed of the patient-wise, class-stratified split")
        sub.add_argument("--classes", nargs="+", help="class names in label order (default: sorted)")
        sub.add_argument("--no-check-images", action="store_true", help="do not check that every image is readable")
        sub.set_defaults(func=_prepare_single_label)
    table.add_argument("--csv", default="labels.csv", help="the CSV, relative to --dataset-dir or absolute")
    for column, default in (("image", "image"), ("label", "label"), ("patient", "patient_id"), ("split", "split")):
        table.add_argument(f"--{column}-column", default=default, help=f"column of the {column} (default {default})")
    table.add_argument("--image-dir", default="", help="folder under --dataset-dir prefixed to every image")
    table.add_argument("--image-suffix", default="", help="appended to image names without one, e.g. .jpg")
    mnist = datasets.add_parser("medmnist", help="any 2-D MedMNIST v2 npz ({flag}.npz or {flag}_{64,128,224}.npz): "
                                "PNGs + datalist with the published class names")  # fmt: skip
    mnist.add_argument("--npz", required=True, type=Path, help="e.g. pathmnist.npz or dermamnist_128.npz")
    mnist.add_argument("--output", required=True, type=Path, help="datalist JSON; PNGs go to images/ beside it")
    mnist.add_argument("--flag", help="MedMNIST flag (default: from the file name)")
    mnist.set_defaults(func=_prepare_single_label)

    for name, what in (("dermoscopy", "skin lesions: keratosis / melanoma / nevus, class folders + patients.csv"),
                       ("endoscopy", "colonoscopy: normal / polyp / ulcerative-colitis, class folders + "
                                     "patients.csv")):  # fmt: skip
        sub = gen_sets.add_parser(name, help=f"synthetic {what}")
        sub.add_argument("--output-dir", required=True, type=Path)
        sub.add_argument("--patients", type=int, default=60)
        sub.add_argument("--max-images-per-patient", type=int, default=3)
        sub.add_argument("--image-size", type=int, default=64)
        sub.add_argument("--seed", type=int, default=0)
        sub.set_defaults(func=_generate_single_label)
    brain = gen_sets.add_parser("brain-mri", help="synthetic brain MRI: Training|Testing/<glioma|meningioma|notumor|"
                                "pituitary>/ like the public brain-tumour MRI set")  # fmt: skip
    brain.add_argument("--output-dir", required=True, type=Path)
    brain.add_argument("--patients", type=int, default=80)
    brain.add_argument("--image-size", type=int, default=64)
    brain.add_argument("--test-fraction", type=float, default=0.25)
    brain.add_argument("--seed", type=int, default=0)
    brain.set_defaults(func=_generate_single_label)
    npz = gen_sets.add_parser("medmnist", help="a synthetic MedMNIST v2 npz of a single-label 2-D flag")
    npz.add_argument("--output-dir", required=True, type=Path)
    npz.add_argument("--flag", default="pathmnist")
    npz.add_argument("--size", type=int, default=28, choices=[28, 64, 128, 224])
    for split, count in (("train", 180), ("val", 36), ("test", 72)):
        npz.add_argument(f"--{split}", type=int, default=count, help=f"{split} images")
    npz.add_argument("--seed", type=int, default=0)
    npz.set_defaults(func=_generate_single_label)


def _generate_chestxray14(args: argparse.Namespace) -> None:
    from common.synthetic import generate_chestxray14

    root = generate_chestxray14(args.output_dir, n_patients=args.patients, image_size=args.image_size, seed=args.seed,
                                prevalence=args.prevalence)  # fmt: skip
    sys.stdout.write(f"wrote a synthetic ChestX-ray14-layout dataset to {root}\n")


def _demo(args: argparse.Namespace) -> None:
    from common.demo import DEMO_GRID, run_demo, run_tour

    if args.tour:
        run_tour(args.output_dir, n_patients=args.patients, image_size=args.image_size, epochs=args.epochs,
                 seed=args.seed, mammography=not args.skip_mammography)
    else:
        run_demo(args.output_dir, grid=args.grid or DEMO_GRID, num_workers=args.num_workers)


def _probe_cutoff(args: argparse.Namespace) -> None:
    from common.finetune.probe import format_table, probe_bundle_cutoff

    chosen = {"pretrained": args.pretrained, "image_size": args.image_size, "num_workers": args.num_workers}
    overrides = {key: value for key, value in chosen.items() if value is not None}
    overrides.update(dict(args.set or []))
    rows = probe_bundle_cutoff(args.bundle, args.dataset_dir, args.layers, max_batches=args.max_batches, **overrides)
    sys.stdout.write(format_table(rows) + "\n")


def _explain_eval(args: argparse.Namespace) -> None:
    from common.explain.bundle import evaluate_pointing_game, format_pointing_table

    result = evaluate_pointing_game(args.bundle_root, args.dataset_dir, args.datalist, args.split,
                                    configs_dir=args.configs, batch_size=args.batch_size,
                                    tolerance_px=args.tolerance_px, iou_threshold=args.iou_threshold,
                                    n_boot=args.n_boot, seed=args.seed)  # fmt: skip
    out = Path(args.bundle_root) / "explanations"
    sys.stdout.write(f"wrote {out / 'pointing_game.json'} and {out / 'pointing_game.md'}\n"
                     f"{format_pointing_table(result)}")  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m common`` argument parser (prepare-data, prepare-cache, generate-data, demo, probe-cutoff,
    explain-eval)."""
    parser = argparse.ArgumentParser(prog="python -m common", description=__doc__.split("\n")[0])
    parser.add_argument("--debug", action="store_true",
                        help=f"show the full traceback of a user error (or set {DEBUG_ENV}=1)")
    commands = parser.add_subparsers(dest="command", required=True)

    prepare = commands.add_parser("prepare-data", help="turn a public dataset's native layout into a datalist JSON")
    datasets = prepare.add_subparsers(dest="dataset", required=True)
    cxr = datasets.add_parser("chestxray14", help="NIH ChestX-ray14: Data_Entry_2017.csv + images/ (+ split lists)")
    cxr.add_argument("--dataset-dir", required=True, type=Path, help="folder holding Data_Entry_2017*.csv, images/")
    cxr.add_argument("--output", required=True, type=Path, help="datalist JSON to write")
    cxr.add_argument("--val-fraction", type=float, default=0.1, help="patients of train_val used for validation")
    cxr.add_argument("--seed", type=int, default=0, help="seed of the patient-wise split")
    cxr.add_argument("--no-check-images", action="store_true", help="do not verify every image file exists")
    cxr.add_argument("--task", help="binary task: a finding (e.g. Effusion; images with it, other findings allowed) "
                     "or 'any', vs 'No Finding'; other images are left out. Default: the 14 labels")  # fmt: skip
    cxr.add_argument("--task-alone", action="store_true", help="with --task FINDING: positives only with FINDING alone")
    cxr.set_defaults(func=_prepare_chestxray14)
    mnist = datasets.add_parser("chestmnist", help="MedMNIST ChestMNIST npz (28/64/128/224 px)")
    mnist.add_argument("--npz", required=True, type=Path, help="chestmnist.npz or chestmnist_{64,128,224}.npz")
    mnist.add_argument("--output", required=True, type=Path, help="datalist JSON; PNGs go to images/ beside it")
    mnist.set_defaults(func=_prepare_chestmnist)
    cbis = datasets.add_parser("cbis-ddsm", help="CBIS-DDSM: the four case-description CSVs + the DICOM tree")
    inbreast = datasets.add_parser("inbreast", help="INbreast: AllDICOMs/ + INbreast.csv (BI-RADS labels)")
    for sub, val in ((cbis, 0.1), (inbreast, 0.15)):
        sub.add_argument("--dataset-dir", required=True, type=Path, help="the dataset's top folder")
        sub.add_argument("--output", required=True, type=Path, help="datalist JSON to write")
        sub.add_argument("--val-fraction", type=float, default=val, help="patients used for validation")
        sub.add_argument("--seed", type=int, default=0, help="seed of the patient-wise split")
        sub.set_defaults(func=_prepare_mammography)
    cbis.add_argument("--no-check-images", action="store_true", help="do not verify every DICOM exists")
    inbreast.add_argument("--test-fraction", type=float, default=0.2, help="patients used for test")
    inbreast.add_argument("--malignant-from", default="4", help="lowest BI-RADS counted malignant (4 = 4a)")
    bcss = datasets.add_parser("bcss", help="BCSS: rgbs_colorNormalized/ (or images/) + masks/ PNGs, meta/ codes")
    bcss.add_argument("--dataset-dir", required=True, type=Path, help="the dataset's top folder")
    bcss.add_argument("--output", required=True, type=Path, help="datalist JSON to write")
    bcss.add_argument("--val-fraction", type=float, default=0.15, help="patients used for validation")
    bcss.add_argument("--test-fraction", type=float, default=0.2, help="patients used for test (no official split)")
    bcss.add_argument("--seed", type=int, default=0, help="seed of the patient-wise split")
    bcss.add_argument("--no-check-images", action="store_true", help="do not read masks to check their codes")
    bcss.set_defaults(func=_prepare_bcss)
    general = datasets.add_parser("general-medical", help="stage-2 pretraining: merge many sources into one "
                                  "weighted multi-label datalist (test splits left out)")  # fmt: skip
    general.add_argument("--sources", required=True, type=Path, help="YAML/JSON list of sources (name, kind, "
                         "path, modality, class_names ...; see bundles/medical_general_pretraining/docs/README.md)")
    general.add_argument("--output", required=True, type=Path, help="folder receiving datalist.json (and the PNGs "
                         "of medmnist sources)")  # fmt: skip
    general.add_argument("--val-fraction", type=float, default=0.1, help="validation share drawn for sources "
                         "without a validation split")  # fmt: skip
    general.add_argument("--seed", type=int, default=0, help="seed of those draws")
    general.add_argument("--target", choices=["class", "modality+class"], default="class",
                         help="outputs: the class union, or the union plus one-hot modalities")
    general.set_defaults(func=_prepare_general_medical)

    cache = commands.add_parser(
        "prepare-cache", help="run a bundle's deterministic preprocessing once into a memory-mapped image cache",
        description="Runs the bundle's own load_transforms (load, labels, CLAHE, masking, crop, resize ...) once per "
                    "datalist item and stores the results losslessly in .npy shards, fingerprinted by the resolved "
                    "transform settings, library versions and source files (path, size, mtime_ns). Train, evaluate "
                    "or infer from it with --cache_dir DIR; random augmentation still runs every epoch. An "
                    "interrupted build resumes from its completed shards; a rerun after a change rebuilds only the "
                    "shards it affects.")  # fmt: skip
    cache.add_argument("--bundle", required=True, type=Path, help="bundle folder (its configs/train.json is read)")
    cache.add_argument("--datalist", required=True, type=Path, help="datalist JSON the bundle will read")
    cache.add_argument("--output", required=True, type=Path, help="cache folder (new, or an earlier cache to resume)")
    cache.add_argument("--splits", nargs="+", help="splits to cache (default: training, validation, test present)")
    cache.add_argument("--dataset-dir", type=Path, help="the bundle's dataset_dir (default: the datalist's folder)")
    cache.add_argument("--config", default="train.json", help="config under BUNDLE/configs defining load_transforms")
    cache.add_argument("--set", action="append", type=_parse_set, metavar="KEY=VALUE",
                       help="config override the bundle will run with, e.g. --set image_size=512 (repeatable; "
                            "VALUE read as JSON); part of the fingerprint")  # fmt: skip
    cache.add_argument("--num-workers", type=int, help="DataLoader workers preparing images (default: CPUs - 1, <= 8)")
    cache.add_argument("--shard-size", type=int, default=512, help="images per shard (the unit of resuming)")
    cache.add_argument("--dtype", choices=["auto", "uint8", "uint16"], default="auto",
                       help="auto: narrowest lossless dtype per shard; uint8/uint16: quantise float images "
                            "(lossy, recorded and warned about)")  # fmt: skip
    cache.add_argument("--no-progress", action="store_true", help="no progress bar")
    cache.set_defaults(func=_prepare_cache)

    generate = commands.add_parser("generate-data", help="write synthetic data in a public dataset's layout")
    gen_sets = generate.add_subparsers(dest="dataset", required=True)
    gen = gen_sets.add_parser("chestxray14", help="synthetic chest radiographs in the NIH ChestX-ray14 layout")
    gen.add_argument("--output-dir", required=True, type=Path)
    gen.add_argument("--patients", type=int, default=200)
    gen.add_argument("--image-size", type=int, default=128)
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument("--prevalence", type=float, default=0.25, help="probability of each finding per image (a binary "
                     "--task needs 'No Finding' images: 0.05 gives about half)")  # fmt: skip
    gen.set_defaults(func=_generate_chestxray14)
    for name in ("cbis-ddsm", "inbreast"):
        mammo = gen_sets.add_parser(name, help=f"synthetic DICOM mammograms in the {name} layout")
        mammo.add_argument("--output-dir", required=True, type=Path)
        mammo.add_argument("--patients", type=int, default=60)
        mammo.add_argument("--image-size", type=int, default=256)
        mammo.add_argument("--seed", type=int, default=0)
        mammo.set_defaults(func=_generate_mammography)
    histo = gen_sets.add_parser("bcss", help="synthetic H&E tiles and detailed-code masks in the BCSS layout")
    histo.add_argument("--output-dir", required=True, type=Path)
    histo.add_argument("--patients", type=int, default=6)
    histo.add_argument("--tiles-per-patient", type=int, default=2)
    histo.add_argument("--tile-size", type=int, default=256)
    histo.add_argument("--seed", type=int, default=0)
    histo.set_defaults(func=_generate_bcss)
    _add_single_label_parsers(datasets, gen_sets)
    from common.synthetic.sites import add_sites_parser  # noqa: PLC0415 (imports cv2; only when building the parser)

    add_sites_parser(gen_sets)  # two synthetic hospitals for common.federated (issue 13)

    demo = commands.add_parser(
        "demo", help="run the demo grid on embedded data and print its leaderboard (CPU, < 10 min)",
        description="Embedded data, a short stage-2 pretraining, the chest task from scratch / ImageNet / "
                    "ImageNet->medical with FT and LP-FT over 2 seeds, then the leaderboard (configs/grids/demo.yaml). "
                    "Resumable: rerun to finish an interrupted demo. --tour instead trains, evaluates and runs "
                    "inference with the chest and mammography bundles.")
    demo.add_argument("--output-dir", type=Path, default=Path("demo_output"))
    demo.add_argument("--grid", type=Path, default=None, help="grid file (default configs/grids/demo.yaml)")
    demo.add_argument("--num-workers", type=int, default=2, help="DataLoader workers per run")
    demo.add_argument("--tour", action="store_true", help="single-bundle tour: train, evaluate, infer (no grid)")
    demo.add_argument("--patients", type=int, default=320, help="tour: synthetic chest patients")
    demo.add_argument("--image-size", type=int, default=64, help="tour: chest training resolution")
    demo.add_argument("--epochs", type=int, default=8, help="tour: chest training epochs")
    demo.add_argument("--seed", type=int, default=0, help="tour: data and training seed")
    demo.add_argument("--skip-mammography", action="store_true", help="tour: run only the chest X-ray bundle")
    demo.set_defaults(func=_demo)

    probe = commands.add_parser("probe-cutoff", help="score candidate cut-off layers by a linear probe's val AUC")
    probe.add_argument("--bundle", required=True, type=Path, help="bundle folder (its configs/train.json is used)")
    probe.add_argument("--dataset-dir", required=True, type=Path, help="the bundle's dataset_dir (with datalist.json)")
    probe.add_argument("--layers", required=True, nargs="+", help="module names or Keras DenseNet-121 layer names")
    probe.add_argument("--pretrained", help="weight source (default: the bundle's 'pretrained'); e.g. none")
    probe.add_argument("--image-size", type=int, help="default: the bundle's image_size")
    probe.add_argument("--max-batches", type=int, help="use at most this many batches of each split")
    probe.add_argument("--num-workers", type=int, help="DataLoader workers reading images (default: the bundle's)")
    probe.add_argument("--set", action="append", type=_parse_set, metavar="KEY=VALUE",
                       help="any other top-level bundle setting (VALUE read as JSON; repeatable), e.g. "
                            "--set class_names='[\"No Finding\",\"Effusion\"]' --set color=grey")  # fmt: skip
    probe.set_defaults(func=_probe_cutoff)

    explain = commands.add_parser("explain-eval", help="pointing game + IoU of a trained classifier's Grad-CAM "
                                  "against the datalist's boxes (BBox_List_2017.csv)")  # fmt: skip
    explain.add_argument("--bundle-root", required=True, type=Path, help="bundle_root holding models/model.pt "
                         "(and configs/ unless --configs); results go to its explanations/")  # fmt: skip
    explain.add_argument("--dataset-dir", required=True, type=Path, help="dataset folder (image paths start here)")
    explain.add_argument("--datalist", type=Path, help="datalist JSON with boxes (default DATASET_DIR/datalist.json)")
    explain.add_argument("--split", default="test", help="datalist split to evaluate")
    explain.add_argument("--configs", type=Path, help="the bundle's configs/ folder (default BUNDLE_ROOT/configs)")
    explain.add_argument("--batch-size", type=int, default=8)
    explain.add_argument("--tolerance-px", type=float, default=15.0, help="pointing-game tolerance per 1024 px")
    explain.add_argument("--iou-threshold", type=float, default=0.5, help="IoU region: map >= this x its max")
    explain.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples of the boxes")
    explain.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    explain.set_defaults(func=_explain_eval)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run the command; returns the process exit status."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")

    def command() -> int:
        args.func(args)
        return 0

    return run_command(command, debug=args.debug)
