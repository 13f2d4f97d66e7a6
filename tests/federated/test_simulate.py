"""2 sites x 2 rounds x 1 local epoch through NVFlare's real simulator (threads, CPU), with the job exported.

The run uses the LP strategy: the whole path (training, weight differences, FedAvg aggregation) runs, and frozen
tensors can be checked bit for bit across the federation (full fine-tuning runs in test_site and test_bundles).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

from common.experiments.runner import RESULT_COLUMNS
from common.experiments.stats import parse_runs
from common.federated.job import FederationSpec, validate_job_folder
from common.federated.simulate import load_global_model, simulate
from common.federated.site import weights_digest
from tests.federated.conftest import CHEST_BUNDLE, FINETUNE, TINY


@pytest.fixture(scope="module")
def federation(tmp_path_factory: pytest.TempPathFactory, fl_sites: dict) -> tuple[Path, dict, FederationSpec]:
    out = tmp_path_factory.mktemp("federation")
    spec = FederationSpec(bundle=str(CHEST_BUNDLE), sites={s: i["datalist"] for s, i in fl_sites["sites"].items()},
                          rounds=2, local_epochs=1, strategy=str(FINETUNE / "lp.json"), overrides=dict(TINY),
                          workdir=str(out / "run"))
    summary = simulate(spec, export_dir=out / "export")
    return out, summary, spec


def _sent(run: Path, site: str, current_round: int) -> dict:
    return json.loads((run / "sites" / site / "rounds" / f"round_{current_round:03d}" / "sent.json").read_text())


def test_the_global_model_changes_every_round(federation: tuple) -> None:
    out, summary, spec = federation
    run = out / "run"
    initial = weights_digest(torch.load(run / "initial_model.pt", weights_only=True))
    final = weights_digest(load_global_model(summary["global_model"]))
    received = [{_sent(run, site, r)["received_sha256"] for site in spec.sites} for r in range(2)]
    assert all(len(r) == 1 for r in received)  # every site received the same global model in a round
    digests = [initial, *(r.pop() for r in received), final]
    assert digests[0] == digests[1]  # round 0 starts from the initial model
    assert len(set(digests[1:])) == 3  # round 1 and the final model are new global models


def test_frozen_tensors_are_identical_after_aggregation(federation: tuple) -> None:
    out, summary, _ = federation
    start = torch.load(out / "run" / "initial_model.pt", weights_only=True)
    final = load_global_model(summary["global_model"])
    changed = sorted(k for k in start if not torch.equal(start[k], final[k].to(start[k].dtype)))
    assert changed == ["fc.bias", "fc.weight"]  # LP: only the head; BatchNorm statistics included


def test_per_site_and_pooled_metrics_every_round(federation: tuple) -> None:
    out, summary, spec = federation
    rows = list(csv.DictReader((out / "run" / "rounds.csv").open()))
    assert {(r["round"], r["site"]) for r in rows} == {(str(n), s) for n in range(3) for s in
                                                       [*spec.sites, "pooled"]}
    assert all(0.0 <= float(r["value"]) <= 1.0 for r in rows)
    assert {r["metric"] for r in rows} == {"mean_auc"} and summary["metric"] == "mean_auc"  # the chest bundle's own
    for site in spec.sites:
        for stage in ("round_000", "round_001", "final"):
            report = out / "run" / "sites" / site / "rounds" / stage
            assert (report / "metrics.json").is_file() and (report / "predictions.npz").is_file()
        assert (out / "run" / "sites" / site / "models" / "model_final.pt").is_file()
    assert set(summary["sites"]) == set(spec.sites)


def test_results_csv_is_in_the_experiment_runner_format(federation: tuple) -> None:
    out, summary, _ = federation
    with (out / "run" / "results.csv").open() as handle:
        reader = csv.DictReader(handle)
        assert tuple(reader.fieldnames or ()) == RESULT_COLUMNS
        runs = parse_runs(list(reader))
    assert len(runs) == 1 and runs[0].strategy == "lp" and runs[0].value == summary["final_pooled"]


def test_sites_sent_model_tensors_and_scalars_only(federation: tuple, fl_sites: dict) -> None:
    out, _, spec = federation
    names = set(torch.load(out / "run" / "initial_model.pt", weights_only=True))
    for site in spec.sites:
        datalist = json.loads(Path(fl_sites["sites"][site]["datalist"]).read_text())
        private = {str(i["patient_id"]) for items in datalist.values() for i in items}
        private |= {Path(i["image"]).name for items in datalist.values() for i in items}
        for current_round in range(2):
            sent = _sent(out / "run", site, current_round)
            assert set(sent["params"]) == names
            assert all(isinstance(v, float) for v in sent["metrics"].values())
            text = json.dumps({"params": sent["params"], "metrics": sent["metrics"]})
            assert not any(token in text for token in private | {site, "/"})


def test_exported_job_folder_validates(federation: tuple) -> None:
    out, _, spec = federation
    job = out / "export" / spec.name
    meta = validate_job_folder(job)
    assert set(meta["deploy_map"]) == {"app_server", *(f"app_{s}" for s in spec.sites)}
    assert (job / "app_server" / "custom" / "initial_model.pt").is_file()
    server = json.loads((job / "app_server" / "config" / "config_fed_server.json").read_text())
    persistor = next(c for c in server["components"] if c["id"] == "persistor")
    assert persistor["path"].endswith("PTFileModelPersistor")  # loads with weights_only=True unless told otherwise
    assert persistor["args"].get("load_weights_only", True) is True
    for site in spec.sites:
        config = json.loads((job / f"app_{site}" / "config" / "config_fed_client.json").read_text())
        args = config["executors"][0]["executor"]["args"]
        assert args["task_script_path"] == "client_script.py"
        assert spec.sites[site] in args["task_script_args"]
        assert (job / f"app_{site}" / "custom" / "client_script.py").is_file()
